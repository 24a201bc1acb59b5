"""What route handlers receive: the bus, the caller, the request id, the consistency position."""

from datetime import datetime
from typing import Annotated, TypeVar

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import Parameter, QueryParameter

from gateway.auth import caller
from gateway.bus import Bus
from shop.contracts.commands import NO_NUL, Actor
from shop.contracts.replies import Reply
from shop.errors import ValidationFailed

T = TypeVar("T")

# what route handlers declare to receive the dependencies the app provides
BusDependency = NamedDependency[Bus]
Caller = NamedDependency[Actor | None]
RequestId = NamedDependency[str]
MinPosition = NamedDependency[int]
# a time with its offset (RFC 3339): a naive time is ambiguous, and a bare number is no time
RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
PathId = Annotated[str, Parameter(min_length=1, max_length=64, pattern=NO_NUL)]  # a product's or an order's id


def provide_bus(state: State) -> Bus:
    return state.bus


def provide_actor(request: Request) -> Actor | None:
    return caller(request)


def provide_request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


def provide_min_position(request: Request) -> int:
    """From `X-Consistency-Token` (the `position` of a command reply) or `?min_position=`."""
    raw = request.headers.get("x-consistency-token") or request.query_params.get("min_position") or "0"
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ValidationFailed("X-Consistency-Token / min_position must be a non-negative integer position")
    return int(raw)


def moment_parameter(name: str):
    return QueryParameter(name=name, default=None, pattern=RFC3339, schema_extra={"format": "date-time"})


def moment(value: str | None, name: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value is not None else None
    except ValueError as exc:
        raise ValidationFailed(f"{name} is not a time: {exc}") from exc


def query_response(reply: Reply, view: type[T]) -> Response[T]:
    headers = {"X-Consistency": reply.consistency or "fresh", "X-Read-Position": str(reply.read_position or 0)}
    return Response(msgspec.json.decode(reply.result, type=view), headers=headers)
