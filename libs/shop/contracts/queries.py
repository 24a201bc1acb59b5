"""Queries: what a caller asks the query-service, one NATS subject each."""

from datetime import date, datetime
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta, Struct

from shop.contracts.commands import NO_NUL, Actor, Id, Money


class GetOrder(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "qry.orders.get"
    projection: ClassVar[str] = "order-list"
    id: Id


class GetProduct(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "qry.products.get"
    projection: ClassVar[str] = "catalog"
    id: Id


class GetAnalyticsSummary(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "qry.analytics.summary"
    projection: ClassVar[str] = "analytics"
    date_from: date | None = None
    date_to: date | None = None
    top: Annotated[int, Meta(ge=1, le=100)] = 10


Page = Annotated[int, Meta(ge=1, le=100)]  # with Size: page * size <= MAX_RESULT_WINDOW
Size = Annotated[int, Meta(ge=1, le=100)]
ProductSort = Literal["newest", "price_asc", "price_desc", "popular", "rating"]
OrderStatus = Literal["placed", "paid", "shipped", "cancelled"]
Text = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Moment = Annotated[datetime, Meta(tz=True)]  # with its time zone: a naive time is ambiguous
MAX_RESULT_WINDOW = 10_000  # how deep a page may reach (OpenSearch's index.max_result_window)


class ListProducts(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "qry.products.list"
    projection: ClassVar[str] = "catalog"
    category: Text | None = None
    sort: ProductSort = "newest"
    page: Page = 1
    size: Size = 20


class SearchProducts(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "qry.products.search"
    projection: ClassVar[str] = "catalog"
    q: Text
    category: Text | None = None
    min_price: Money | None = None
    max_price: Money | None = None
    sort: ProductSort | None = None  # None: by relevance
    page: Page = 1
    size: Size = 20


class PopularProducts(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "qry.products.popular"
    projection: ClassVar[str] = "analytics"
    limit: Size = 10


class ListOrders(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    """The caller's own orders, newest first."""

    subject: ClassVar[str] = "qry.orders.list"
    projection: ClassVar[str] = "order-list"
    status: OrderStatus | None = None
    page: Page = 1
    size: Size = 20


class SearchOrders(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "qry.orders.search"
    projection: ClassVar[str] = "order-list"
    q: Text | None = None  # product names or an order id
    status: OrderStatus | None = None
    placed_from: Moment | None = None
    placed_to: Moment | None = None
    page: Page = 1
    size: Size = 20


class GetSyncPositions(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    """How far each projection has got (no waiting)."""

    subject: ClassVar[str] = "qry.sync.positions"
    projection: ClassVar[str | None] = None


Query = (
    GetOrder
    | GetProduct
    | GetAnalyticsSummary
    | ListProducts
    | SearchProducts
    | PopularProducts
    | ListOrders
    | SearchOrders
    | GetSyncPositions
)


class QueryMeta(Struct, frozen=True, kw_only=True):
    actor: Actor | None = None
    correlation_id: str
    min_position: Annotated[int, Meta(ge=0)] = 0


class QueryRequest(Struct, frozen=True, kw_only=True):
    meta: QueryMeta
    query: Query


query_request_decoder = msgspec.json.Decoder(QueryRequest)
