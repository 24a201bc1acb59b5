"""Order routes: a user's own orders."""

from litestar import Controller, Response, get, post
from litestar.params import FromQuery, JSONBody, Parameter
from msgspec import Struct

from gateway.auth import ADMIN, USER
from gateway.dependencies import (
    BusDependency,
    Caller,
    MinPosition,
    PathId,
    RequestId,
    moment,
    moment_parameter,
    query_response,
)
from gateway.problems import ADMIN_QUERY, COMMAND, USER_QUERY
from gateway.products import IdempotencyKey, PageNumber, PageSize
from shop.contracts.commands import NO_NUL, CancelOrder, PayOrder, PlaceOrder, Reason, ShipOrder
from shop.contracts.queries import GetOrder, ListOrders, OrderStatus, SearchOrders
from shop.contracts.replies import CommandResult
from shop.contracts.views import OrderPage, OrderView


class Cancellation(Struct, frozen=True, kw_only=True):
    reason: Reason = ""


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]
    guards = USER

    @post(
        "/",
        responses=COMMAND,
        status_code=201,
        summary="Place an order (reserves stock on every product, all or nothing)",
    )
    async def place_order(
        self,
        data: JSONBody[PlaceOrder],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        return await bus.command(data, actor, request_id, idempotency_key)

    @get("/", responses=USER_QUERY, summary="The caller's orders, newest first")
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

    @post("/{order_id:str}/pay", responses=COMMAND, status_code=200, summary="Pay an order (owner or admin)")
    async def pay_order(
        self,
        order_id: PathId,
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        return await bus.command(PayOrder(order_id=order_id), actor, request_id, idempotency_key)

    @post(
        "/{order_id:str}/cancel",
        responses=COMMAND,
        status_code=200,
        summary="Cancel an order before shipping (owner or admin)",
    )
    async def cancel_order(
        self,
        order_id: PathId,
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        data: JSONBody[Cancellation | None] = None,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        command = CancelOrder(order_id=order_id, reason=data.reason if data else "")
        return await bus.command(command, actor, request_id, idempotency_key)

    @get("/{order_id:str}", responses=USER_QUERY, summary="Order detail with status history (owner or admin)")
    async def get_order(
        self,
        order_id: PathId,
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

    @get(
        "/search",
        responses=ADMIN_QUERY,
        summary="Search orders by product name or order id, status and date range (admin)",
    )
    async def search_orders(
        self,
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        min_position: MinPosition,
        q: str | None = Parameter(default=None, min_length=1, max_length=200, pattern=NO_NUL),
        status: FromQuery[OrderStatus | None] = None,
        placed_from: str | None = moment_parameter("from"),
        placed_to: str | None = moment_parameter("to"),
        page: int = PageNumber,
        size: int = PageSize,
    ) -> Response[OrderPage]:
        placed = {"placed_from": moment(placed_from, "from"), "placed_to": moment(placed_to, "to")}
        query = SearchOrders(q=q, status=status, **placed, page=page, size=size)
        return query_response(await bus.query(query, actor, request_id, min_position), OrderPage)

    @post("/{order_id:str}/ship", responses=COMMAND, status_code=200, summary="Ship a paid order (admin)")
    async def ship_order(
        self,
        order_id: PathId,
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        return await bus.command(ShipOrder(order_id=order_id), actor, request_id, idempotency_key)
