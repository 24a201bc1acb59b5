"""The business rules of DESIGN §3, each on the pure aggregates."""

from datetime import UTC, datetime

import pytest

from command_service.domain import order, product
from shop.contracts.commands import Actor, AddReview, CancelOrder, ChangePrice, OrderLine, PlaceOrder, Restock
from shop.contracts.events import OrderCancelled, ProductPriceChanged, ProductStockReleased
from shop.errors import Forbidden, InvalidState, NotFound, PriceRuleViolation

NOW = datetime(2026, 11, 24, tzinfo=UTC)
PHONE = product.Product(name="Phone", price=1000, stock=5)
OWNER, STRANGER, ADMIN = Actor(user_id="u1"), Actor(user_id="u2"), Actor(user_id="a1", roles=("admin",))


def placed_order(quantity: int = 2) -> order.Order:
    placed, _ = order.place_order(
        "o1", "u1", PlaceOrder(items=(OrderLine(product_id="p1", quantity=quantity),)), {"p1": PHONE}, NOW
    )
    return order.evolve(None, placed)


def after(state, events, evolve):
    for event in events:
        state = evolve(state, event)
    return state


@pytest.mark.parametrize(("new_price", "allowed"), [(2000, True), (2001, False), (0, True), (500, True)])
def test_a_price_may_at_most_double_in_one_change(new_price, allowed):
    command = ChangePrice(product_id="p1", new_price=new_price)
    if allowed:
        assert product.change_price(PHONE, command) == [ProductPriceChanged(old_price=1000, new_price=new_price)]
    else:
        with pytest.raises(PriceRuleViolation):
            product.change_price(PHONE, command)


def test_an_unchanged_price_records_nothing():
    assert product.change_price(PHONE, ChangePrice(product_id="p1", new_price=1000)) == []


def test_commands_on_a_missing_product_are_not_found():
    with pytest.raises(NotFound):
        product.restock(None, Restock(product_id="p9", quantity=1))


def test_restocking_adds_to_the_stock():
    assert after(PHONE, product.restock(PHONE, Restock(product_id="p1", quantity=3)), product.evolve).stock == 8


def test_one_review_per_user_per_product():
    review = AddReview(product_id="p1", rating=4, text="good")
    reviewed = after(PHONE, product.add_review(PHONE, review, "u1"), product.evolve)
    assert product.add_review(reviewed, review, "u2")  # another user may
    with pytest.raises(InvalidState):
        product.add_review(reviewed, review, "u1")


def test_an_order_goes_placed_paid_shipped():
    state = placed_order()
    state = after(state, order.pay_order(state, "o1", OWNER), order.evolve)
    assert state.status == "paid"
    state = after(state, order.ship_order(state, "o1", ADMIN), order.evolve)
    assert state.status == "shipped"


@pytest.mark.parametrize(
    ("step", "actor", "error"),
    [
        (lambda s, a: order.pay_order(s, "o1", a), STRANGER, Forbidden),
        (lambda s, a: order.ship_order(s, "o1", a), OWNER, Forbidden),
        (lambda s, a: order.ship_order(s, "o1", a), ADMIN, InvalidState),  # not paid yet
        (lambda s, a: order.cancel_order(s, CancelOrder(order_id="o1"), a), STRANGER, Forbidden),
    ],
)
def test_who_may_do_what_and_when(step, actor, error):
    with pytest.raises(error):
        step(placed_order(), actor)


def test_cancelling_returns_the_stock_and_carries_what_the_order_added():
    cancelled, releases = order.cancel_order(placed_order(quantity=2), CancelOrder(order_id="o1", reason="x"), OWNER)
    assert isinstance(cancelled, OrderCancelled) and cancelled.total == 2000 and cancelled.placed_at == NOW
    assert releases == {"p1": ProductStockReleased(quantity=2, order_id="o1")}


def test_a_shipped_or_cancelled_order_cannot_be_cancelled():
    paid = after(placed_order(), [order.pay_order(placed_order(), "o1", OWNER)[0]], order.evolve)
    shipped = after(paid, order.ship_order(paid, "o1", ADMIN), order.evolve)
    cancelled = after(
        placed_order(), [order.cancel_order(placed_order(), CancelOrder(order_id="o1"), ADMIN)[0]], order.evolve
    )
    for state in (shipped, cancelled):
        with pytest.raises(InvalidState):
            order.cancel_order(state, CancelOrder(order_id="o1"), ADMIN)
        with pytest.raises(InvalidState):
            order.pay_order(state, "o1", ADMIN)
