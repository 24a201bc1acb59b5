"""Product routes: admin writes, public reads."""

from litestar import Controller, Response, get, post, put
from litestar.params import FromQuery, HeaderParameter, JSONBody, Parameter, QueryParameter
from msgspec import Struct

from gateway.auth import ADMIN, USER
from gateway.dependencies import BusDependency, Caller, MinPosition, PathId, RequestId, query_response
from gateway.problems import COMMAND, DETAIL, QUERY
from shop.contracts.commands import (
    MAX_MONEY,
    NO_NUL,
    AddReview,
    ChangePrice,
    CreateProduct,
    Money,
    Quantity,
    Rating,
    Reason,
    Restock,
    ReviewText,
)
from shop.contracts.queries import GetProduct, ListProducts, PopularProducts, ProductSort, SearchProducts
from shop.contracts.replies import CommandResult
from shop.contracts.views import PopularProductList, ProductDetail, ProductPage, ProductSearchPage

IdempotencyKey = HeaderParameter(name="Idempotency-Key", default=None, max_length=200)
# Litestar leaves a bound of 0 out of a parameter's OpenAPI schema: given again as "extra"
PriceBound = Parameter(default=None, ge=0, le=MAX_MONEY, schema_extra={"minimum": 0})
PageNumber = QueryParameter(name="page", ge=1, le=100, default=1)  # at most 100 x 100: OpenSearch's window
PageSize = QueryParameter(name="size", ge=1, le=100, default=20)


class NewPrice(Struct, frozen=True, kw_only=True):
    new_price: Money
    reason: Reason = ""


class NewStock(Struct, frozen=True, kw_only=True):
    quantity: Quantity


class NewReview(Struct, frozen=True, kw_only=True):
    rating: Rating
    text: ReviewText = ""


class ProductController(Controller):
    path = "/v1"
    tags = ["products"]

    @post("/admin/products", guards=ADMIN, responses=COMMAND, status_code=201, summary="Create a product (admin)")
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
        responses=COMMAND,
        summary="Change a price (admin; at most doubles at once)",
    )
    async def change_price(
        self,
        product_id: PathId,
        data: JSONBody[NewPrice],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        command = ChangePrice(product_id=product_id, new_price=data.new_price, reason=data.reason)
        return await bus.command(command, actor, request_id, idempotency_key)

    @post(
        "/admin/products/{product_id:str}/restock",
        guards=ADMIN,
        responses=COMMAND,
        status_code=200,
        summary="Add stock (admin)",
    )
    async def restock(
        self,
        product_id: PathId,
        data: JSONBody[NewStock],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        command = Restock(product_id=product_id, quantity=data.quantity)
        return await bus.command(command, actor, request_id, idempotency_key)

    @post(
        "/products/{product_id:str}/reviews",
        guards=USER,
        responses=COMMAND,
        status_code=201,
        summary="Review a product (one per user)",
    )
    async def add_review(
        self,
        product_id: PathId,
        data: JSONBody[NewReview],
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        idempotency_key: str | None = IdempotencyKey,
    ) -> CommandResult:
        command = AddReview(product_id=product_id, rating=data.rating, text=data.text)
        return await bus.command(command, actor, request_id, idempotency_key)

    @get("/products", responses=QUERY, summary="Products of a category, sorted and paged")
    async def list_products(
        self,
        bus: BusDependency,
        request_id: RequestId,
        min_position: MinPosition,
        category: str | None = Parameter(default=None, min_length=1, max_length=200, pattern=NO_NUL),
        sort: FromQuery[ProductSort] = "newest",
        page: int = PageNumber,
        size: int = PageSize,
    ) -> Response[ProductPage]:
        query = ListProducts(category=category, sort=sort, page=page, size=size)
        return query_response(await bus.query(query, None, request_id, min_position), ProductPage)

    @get("/products/search", responses=QUERY, summary="Full-text search with the matched words of the name highlighted")
    async def search_products(
        self,
        bus: BusDependency,
        request_id: RequestId,
        min_position: MinPosition,
        q: str = Parameter(min_length=1, max_length=200, pattern=NO_NUL),
        category: str | None = Parameter(default=None, min_length=1, max_length=200, pattern=NO_NUL),
        min_price: int | None = PriceBound,
        max_price: int | None = PriceBound,
        sort: FromQuery[ProductSort | None] = None,
        page: int = PageNumber,
        size: int = PageSize,
    ) -> Response[ProductSearchPage]:
        query = SearchProducts(
            q=q, category=category, min_price=min_price, max_price=max_price, sort=sort, page=page, size=size
        )
        return query_response(await bus.query(query, None, request_id, min_position), ProductSearchPage)

    @get("/products/popular", responses=QUERY, summary="Best sellers by units sold")
    async def popular_products(
        self,
        bus: BusDependency,
        request_id: RequestId,
        min_position: MinPosition,
        limit: int = Parameter(ge=1, le=100, default=10),
    ) -> Response[PopularProductList]:
        reply = await bus.query(PopularProducts(limit=limit), None, request_id, min_position)
        return query_response(reply, PopularProductList)

    @get("/products/{product_id:str}", responses=DETAIL, summary="Product detail")
    async def get_product(
        self, product_id: PathId, bus: BusDependency, request_id: RequestId, min_position: MinPosition
    ) -> Response[ProductDetail]:
        reply = await bus.query(GetProduct(id=product_id), None, request_id, min_position)
        return query_response(reply, ProductDetail)
