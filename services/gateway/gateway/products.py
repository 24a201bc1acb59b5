"""Product routes: admin writes, public reads."""

from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, Parameter, QueryParameter
from msgspec import Meta, Struct

from gateway.auth import ADMIN, USER
from gateway.dependencies import BusDependency, Caller, MinPosition, RequestId, query_response
from shop.contracts.commands import AddReview, ChangePrice, CreateProduct, Money, Quantity, Restock
from shop.contracts.queries import GetProduct, ListProducts, PopularProducts, ProductSort, SearchProducts
from shop.contracts.replies import CommandResult
from shop.contracts.views import PopularProductList, ProductDetail, ProductPage, ProductSearchPage

IdempotencyKey = HeaderParameter(name="Idempotency-Key", default=None, max_length=200)
PageNumber = QueryParameter(name="page", ge=1, le=10_000, default=1)
PageSize = QueryParameter(name="size", ge=1, le=100, default=20)


class NewPrice(Struct, frozen=True, kw_only=True):
    new_price: Money
    reason: Annotated[str, Meta(max_length=500)] = ""


class NewStock(Struct, frozen=True, kw_only=True):
    quantity: Quantity


class NewReview(Struct, frozen=True, kw_only=True):
    rating: Annotated[int, Meta(ge=1, le=5)]
    text: Annotated[str, Meta(max_length=5000)] = ""


class ProductController(Controller):
    path = "/v1"
    tags = ["products"]

    @post("/admin/products", guards=ADMIN, status_code=201, summary="Create a product (admin)")
    async def create_product(
        self,
        data: JSONBody[CreateProduct],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        return await bus.command(data, actor, request_id, idempotency_key)

    @put(
        "/admin/products/{product_id:str}/price",
        guards=ADMIN,
        summary="Change a price (admin; at most doubles at once)",
    )
    async def change_price(
        self,
        product_id: FromPath[str],
        data: JSONBody[NewPrice],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        command = ChangePrice(product_id=product_id, new_price=data.new_price, reason=data.reason)
        return await bus.command(command, actor, request_id, idempotency_key)

    @post("/admin/products/{product_id:str}/restock", guards=ADMIN, status_code=200, summary="Add stock (admin)")
    async def restock(
        self,
        product_id: FromPath[str],
        data: JSONBody[NewStock],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        command = Restock(product_id=product_id, quantity=data.quantity)
        return await bus.command(command, actor, request_id, idempotency_key)

    @post("/products/{product_id:str}/reviews", guards=USER, status_code=201, summary="Review a product (one per user)")
    async def add_review(
        self,
        product_id: FromPath[str],
        data: JSONBody[NewReview],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        command = AddReview(product_id=product_id, rating=data.rating, text=data.text)
        return await bus.command(command, actor, request_id, idempotency_key)

    @get("/products", summary="Products of a category, sorted and paged")
    async def list_products(
        self,
        bus: BusDependency,
        request_id: RequestId,
        min_position: MinPosition,
        category: str | None = Parameter(default=None, max_length=200),
        sort: FromQuery[ProductSort] = "newest",
        page: int = PageNumber,
        size: int = PageSize,
    ) -> Response[ProductPage]:
        query = ListProducts(category=category, sort=sort, page=page, size=size)
        return query_response(await bus.query(query, None, request_id, min_position), ProductPage)

    @get("/products/search", summary="Full-text search with the matched words of the name highlighted")
    async def search_products(
        self,
        bus: BusDependency,
        request_id: RequestId,
        min_position: MinPosition,
        q: str = Parameter(min_length=1, max_length=200),
        category: str | None = Parameter(default=None, max_length=200),
        min_price: int | None = Parameter(default=None, ge=0),
        max_price: int | None = Parameter(default=None, ge=0),
        sort: FromQuery[ProductSort | None] = None,
        page: int = PageNumber,
        size: int = PageSize,
    ) -> Response[ProductSearchPage]:
        query = SearchProducts(
            q=q, category=category, min_price=min_price, max_price=max_price, sort=sort, page=page, size=size
        )
        return query_response(await bus.query(query, None, request_id, min_position), ProductSearchPage)

    @get("/products/popular", summary="Best sellers by units sold")
    async def popular_products(
        self,
        bus: BusDependency,
        request_id: RequestId,
        min_position: MinPosition,
        limit: int = Parameter(ge=1, le=100, default=10),
    ) -> Response[PopularProductList]:
        reply = await bus.query(PopularProducts(limit=limit), None, request_id, min_position)
        return query_response(reply, PopularProductList)

    @get("/products/{product_id:str}", summary="Product detail")
    async def get_product(
        self, product_id: FromPath[str], bus: BusDependency, request_id: RequestId, min_position: MinPosition
    ) -> Response[ProductDetail]:
        reply = await bus.query(GetProduct(id=product_id), None, request_id, min_position)
        return query_response(reply, ProductDetail)
