"""The aggregates' decide/evolve functions: pure, no I/O."""

from datetime import UTC, datetime

import pytest

from command_service.domain import order, product
from shop.contracts.commands import CreateProduct, OrderLine, PlaceOrder
from shop.contracts.events import OrderPlaced, ProductCreated, ProductStockDecreased
from shop.errors import InsufficientStock, InvalidState, NotFound

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def create(price: int = 1000, stock: int = 5) -> CreateProduct:
    return CreateProduct(name="Phone", price=price, stock=stock, category="phones", seller_id="s1")


def test_a_new_product_is_created_with_its_price_and_stock():
    [event] = product.create_product(None, create(price=1200, stock=7))
    assert isinstance(event, ProductCreated)
    assert product.evolve(None, event) == product.Product(name="Phone", price=1200, stock=7)


def test_a_product_cannot_be_created_twice():
    state = product.evolve(None, product.create_product(None, create())[0])
    with pytest.raises(InvalidState):
        product.create_product(state, create())


def test_placing_an_order_records_prices_and_decreases_each_products_stock():
    products = {
        "p1": product.Product(name="Phone", price=1000, stock=5),
        "p2": product.Product(name="Case", price=150, stock=1),
    }
    command = PlaceOrder(items=(OrderLine(product_id="p1", quantity=2), OrderLine(product_id="p2", quantity=1)))
    placed, decreases = order.place_order("o1", "u1", command, products, NOW)
    assert [(i.product_id, i.unit_price, i.line_total) for i in placed.items] == [("p1", 1000, 2000), ("p2", 150, 150)]
    assert placed.total == 2150 and placed.user_id == "u1" and placed.placed_at == NOW
    assert decreases == {
        "p1": ProductStockDecreased(quantity=2, order_id="o1"),
        "p2": ProductStockDecreased(quantity=1, order_id="o1"),
    }
    assert product.evolve(products["p1"], decreases["p1"]).stock == 3


def test_lines_for_the_same_product_are_reserved_together():
    products = {"p1": product.Product(name="Phone", price=10, stock=3)}
    command = PlaceOrder(items=(OrderLine(product_id="p1", quantity=2), OrderLine(product_id="p1", quantity=2)))
    with pytest.raises(InsufficientStock):
        order.place_order("o1", "u1", command, products, NOW)


def test_an_order_is_all_or_nothing():
    products = {"p1": product.Product(name="Phone", price=10, stock=3), "p2": None}
    command = PlaceOrder(items=(OrderLine(product_id="p1", quantity=1), OrderLine(product_id="p2", quantity=1)))
    with pytest.raises(NotFound):
        order.place_order("o1", "u1", command, products, NOW)


def test_a_placed_order_starts_in_status_placed():
    placed = OrderPlaced(user_id="u1", items=(), total=0, placed_at=NOW)
    assert order.evolve(None, placed) == order.Order(user_id="u1", status="placed", items=(), total=0, placed_at=NOW)
