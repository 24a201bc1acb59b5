"""Property: over any sequence of restocks, orders and cancellations, stock is never negative and
equals initial + restocked - reserved + released."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from command_service.domain import order, product
from shop.contracts.commands import Actor, CancelOrder, OrderLine, PlaceOrder, Restock
from shop.errors import InsufficientStock, InvalidState

NOW = datetime(2026, 11, 24, tzinfo=UTC)
ADMIN = Actor(user_id="a1", roles=("admin",))

steps = st.lists(
    st.one_of(
        st.tuples(st.just("restock"), st.integers(1, 20)),
        st.tuples(st.just("order"), st.integers(1, 15)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
    ),
    max_size=40,
)


@given(initial=st.integers(0, 30), steps=steps)
def test_stock_is_never_negative_and_always_adds_up(initial, steps):
    stock = product.Product(name="Phone", price=100, stock=initial)
    orders: list[order.Order] = []
    restocked = reserved = released = 0
    for kind, n in steps:
        if kind == "restock":
            for event in product.restock(stock, Restock(product_id="p1", quantity=n)):
                stock = product.evolve(stock, event)
            restocked += n
        elif kind == "order":
            command = PlaceOrder(items=(OrderLine(product_id="p1", quantity=n),))
            try:
                placed, decreases = order.place_order(f"o{len(orders)}", "u1", command, {"p1": stock}, NOW)
            except InsufficientStock:
                assert stock.stock < n
                continue
            stock = product.evolve(stock, decreases["p1"])
            orders.append(order.evolve(None, placed))
            reserved += n
        elif orders:
            i = n % len(orders)
            try:
                cancelled, releases = order.cancel_order(orders[i], CancelOrder(order_id=f"o{i}"), ADMIN)
            except InvalidState:
                assert orders[i].status == "cancelled"
                continue
            orders[i] = order.evolve(orders[i], cancelled)
            stock = product.evolve(stock, releases["p1"])
            released += releases["p1"].quantity
        assert stock.stock >= 0
        assert stock.stock == initial + restocked - reserved + released
