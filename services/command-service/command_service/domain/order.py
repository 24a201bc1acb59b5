"""The Order aggregate: placed -> paid -> shipped; cancelled from placed or paid, returning the stock.
Placing an order also decides the stock events of every product in it."""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from command_service.domain.product import Product
from shop.contracts.commands import Actor, CancelOrder, PlaceOrder
from shop.contracts.events import (
    DomainEvent,
    OrderCancelled,
    OrderItem,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    ProductStockDecreased,
    ProductStockReleased,
)
from shop.errors import Forbidden, InsufficientStock, InvalidState, NotFound


@dataclass(frozen=True, slots=True)
class Order:
    user_id: str
    status: str
    items: tuple[OrderItem, ...]
    total: int
    placed_at: datetime


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


def pay_order(state: Order | None, order_id: str, actor: Actor) -> list[DomainEvent]:
    order = owned(state, order_id, actor)
    if order.status != "placed":
        raise InvalidState(f"an order that is {order.status} cannot be paid")
    return [OrderPaid(by=actor.user_id)]


def ship_order(state: Order | None, order_id: str, actor: Actor) -> list[DomainEvent]:
    if not actor.is_admin:
        raise Forbidden("shipping needs the admin role")
    order = owned(state, order_id, actor)
    if order.status != "paid":
        raise InvalidState(f"an order that is {order.status} cannot be shipped; it must be paid")
    return [OrderShipped(by=actor.user_id)]


def cancel_order(
    state: Order | None, command: CancelOrder, actor: Actor
) -> tuple[OrderCancelled, dict[str, ProductStockReleased]]:
    """Cancelling returns every item's stock to its product."""
    order = owned(state, command.order_id, actor)
    if order.status not in ("placed", "paid"):
        raise InvalidState(f"an order that is {order.status} cannot be cancelled")
    cancelled = OrderCancelled(
        by=actor.user_id, reason=command.reason, items=order.items, total=order.total, placed_at=order.placed_at
    )
    releases = {i.product_id: ProductStockReleased(quantity=i.quantity, order_id=command.order_id) for i in order.items}
    return cancelled, releases


def owned(state: Order | None, order_id: str, actor: Actor) -> Order:
    if state is None:
        raise NotFound(f"order {order_id} does not exist")
    if state.user_id != actor.user_id and not actor.is_admin:
        raise Forbidden("only the owner or an admin may change this order")
    return state


def evolve(state: Order | None, event: DomainEvent) -> Order:
    match state, event:
        case None, OrderPlaced(user_id=user_id, items=items, total=total, placed_at=placed_at):
            return Order(user_id=user_id, status="placed", items=items, total=total, placed_at=placed_at)
        case Order(), OrderPaid():
            return replace(state, status="paid")
        case Order(), OrderShipped():
            return replace(state, status="shipped")
        case Order(), OrderCancelled():
            return replace(state, status="cancelled")
    raise ValueError(f"{type(event).__name__} cannot apply to order state {state!r}")
