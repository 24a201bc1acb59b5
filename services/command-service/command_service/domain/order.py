"""The Order aggregate. Placing an order also decides the stock events of every product in it."""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from command_service.domain.product import Product
from shop.contracts.commands import PlaceOrder
from shop.contracts.events import DomainEvent, OrderItem, OrderPlaced, ProductStockDecreased
from shop.errors import InsufficientStock, NotFound


@dataclass(frozen=True, slots=True)
class Order:
    user_id: str
    status: str
    total: int


def place_order(
    order_id: str,
    user_id: str,
    command: PlaceOrder,
    products: Mapping[str, Product | None],
    now: datetime,
) -> tuple[OrderPlaced, dict[str, ProductStockDecreased]]:
    """All or nothing: every product must exist and have the stock, else nothing is decided."""
    wanted = Counter[str]()
    for line in command.items:
        wanted[line.product_id] += line.quantity
    items, decreases = [], {}
    for product_id, quantity in wanted.items():
        product = products.get(product_id)
        if product is None:
            raise NotFound(f"product {product_id} does not exist")
        if product.stock < quantity:
            raise InsufficientStock(f"product {product_id} has {product.stock} in stock, {quantity} requested")
        items.append(
            OrderItem(
                product_id=product_id,
                name=product.name,
                quantity=quantity,
                unit_price=product.price,
                line_total=product.price * quantity,
            )
        )
        decreases[product_id] = ProductStockDecreased(quantity=quantity, order_id=order_id)
    placed = OrderPlaced(user_id=user_id, items=tuple(items), total=sum(i.line_total for i in items), placed_at=now)
    return placed, decreases


def evolve(state: Order | None, event: DomainEvent) -> Order:
    match event:
        case OrderPlaced(user_id=user_id, total=total) if state is None:
            return Order(user_id=user_id, status="placed", total=total)
    raise ValueError(f"{type(event).__name__} cannot apply to order state {state!r}")
