"""Order routes: a user's own orders."""

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import Parameter

from gateway.auth import require_user
from gateway.bus import Bus
from gateway.dependencies import query_response
from shop.contracts.commands import Actor, PlaceOrder
from shop.contracts.queries import GetOrder
from shop.contracts.replies import CommandResult
from shop.contracts.views import OrderView


class OrderController(Controller):
    path = "/v1/orders"
    tags = ["orders"]

    @post("/", status_code=201, summary="Place an order (reserves stock on every product, all or nothing)")
    async def place_order(
        self,
        data: PlaceOrder,
        bus: Bus,
        actor: Actor | None,
        request_id: str,
        idempotency_key: str | None = Parameter(header="Idempotency-Key", default=None, max_length=200),
    ) -> CommandResult:
        reply = await bus.command(data, require_user(actor), request_id, idempotency_key)
        return msgspec.json.decode(reply.result, type=CommandResult)

    @get("/{order_id:str}", summary="Order detail with status history (owner or admin)")
    async def get_order(
        self, order_id: str, bus: Bus, actor: Actor | None, request_id: str, min_position: int
    ) -> Response[OrderView]:
        reply = await bus.query(GetOrder(id=order_id), require_user(actor), request_id, min_position)
        return query_response(reply, OrderView)
