"""Product routes: admin writes, public reads."""

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import Parameter

from gateway.auth import require_admin
from gateway.bus import Bus
from gateway.dependencies import query_response
from shop.contracts.commands import Actor, CreateProduct
from shop.contracts.queries import GetProduct
from shop.contracts.replies import CommandResult
from shop.contracts.views import ProductDetail


class ProductController(Controller):
    path = "/v1"
    tags = ["products"]

    @post("/admin/products", status_code=201, summary="Create a product (admin)")
    async def create_product(
        self,
        data: CreateProduct,
        bus: Bus,
        actor: Actor | None,
        request_id: str,
        idempotency_key: str | None = Parameter(header="Idempotency-Key", default=None, max_length=200),
    ) -> CommandResult:
        reply = await bus.command(data, require_admin(actor), request_id, idempotency_key)
        return msgspec.json.decode(reply.result, type=CommandResult)

    @get("/products/{product_id:str}", summary="Product detail")
    async def get_product(
        self, product_id: str, bus: Bus, request_id: str, min_position: int
    ) -> Response[ProductDetail]:
        reply = await bus.query(GetProduct(id=product_id), None, request_id, min_position)
        return query_response(reply, ProductDetail)
