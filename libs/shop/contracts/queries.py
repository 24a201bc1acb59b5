"""Queries: what a caller asks the query-service, one NATS subject each."""

from datetime import date
from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta, Struct

from shop.contracts.commands import Actor, Id


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


Query = GetOrder | GetProduct | GetAnalyticsSummary


class QueryMeta(Struct, frozen=True, kw_only=True):
    actor: Actor | None = None
    correlation_id: str
    min_position: Annotated[int, Meta(ge=0)] = 0


class QueryRequest(Struct, frozen=True, kw_only=True):
    meta: QueryMeta
    query: Query


query_request_decoder = msgspec.json.Decoder(QueryRequest)
