"""Order routes: a user's own orders."""

from datetime import datetime
from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter, QueryParameter
from msgspec import Meta, Struct

from gateway.auth import ADMIN, USER
from gateway.dependencies import BusDependency, Caller, MinPosition, RequestId, query_response
from gateway.products import IdempotencyKey, PageNumber, PageSize
from shop.contracts.commands import CancelOrder, PayOrder, PlaceOrder, ShipOrder
from shop.contracts.queries import GetOrder, ListOrders, OrderStatus, SearchOrders
from shop.contracts.replies import CommandResult
from shop.contracts.views import OrderPage, OrderView


class Cancellation(Struct, frozen=True, kw_only=True):
    reason: Annotated[str, Meta(max_length=500)] = ""


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]
    guards = USER

    @post("/", status_code=201, summary="Place an order (reserves stock on every product, all or nothing)")
    async def place_order(
        self,
        data: JSONBody[PlaceOrder],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        return await bus.command(data, actor, request_id, idempotency_key)

    @get("/", summary="The caller's orders, newest first")
    async def list_orders(
        self,
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        min_position: MinPosition,
        status: FromQuery[OrderStatus | None] = None,
        page: int = PageNumber,
        size: int = PageSize,
    ) -> Response[OrderPage]:
        query = ListOrders(status=status, page=page, size=size)
        return query_response(await bus.query(query, actor, request_id, min_position), OrderPage)

    @post("/{order_id:str}/pay", status_code=200, summary="Pay an order (owner or admin)")
    async def pay_order(
        self,
        order_id: FromPath[str],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        return await bus.command(PayOrder(order_id=order_id), actor, request_id, idempotency_key)

    @post("/{order_id:str}/cancel", status_code=200, summary="Cancel an order before shipping (owner or admin)")
    async def cancel_order(
        self,
        order_id: FromPath[str],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        data: JSONBody[Cancellation | None] = None,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        command = CancelOrder(order_id=order_id, reason=data.reason if data else "")
        return await bus.command(command, actor, request_id, idempotency_key)

    @get("/{order_id:str}", summary="Order detail with status history (owner or admin)")
    async def get_order(
        self,
        order_id: FromPath[str],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        min_position: MinPosition,
    ) -> Response[OrderView]:
        reply = await bus.query(GetOrder(id=order_id), actor, request_id, min_position)
        return query_response(reply, OrderView)


class AdminOrderController(Controller):
    path = "/v1/admin/orders"
    tags = ["orders"]
    guards = ADMIN

    @get("/search", summary="Search orders by product name or order id, status and date range (admin)")
    async def search_orders(
        self,
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        min_position: MinPosition,
        q: str | None = Parameter(default=None, min_length=1, max_length=200),
        status: FromQuery[OrderStatus | None] = None,
        placed_from: datetime | None = QueryParameter(name="from", default=None),
        placed_to: datetime | None = QueryParameter(name="to", default=None),
        page: int = PageNumber,
        size: int = PageSize,
    ) -> Response[OrderPage]:
        query = SearchOrders(q=q, status=status, placed_from=placed_from, placed_to=placed_to, page=page, size=size)
        return query_response(await bus.query(query, actor, request_id, min_position), OrderPage)

    @post("/{order_id:str}/ship", status_code=200, summary="Ship a paid order (admin)")
    async def ship_order(
        self,
        order_id: FromPath[str],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        return await bus.command(ShipOrder(order_id=order_id), actor, request_id, idempotency_key)
