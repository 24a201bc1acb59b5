"""What route handlers receive: the bus, the caller, the request id, the consistency position."""

from typing import TypeVar

import msgspec
from litestar import Request, Response
from litestar.datastructures import State
from litestar.di import NamedDependency

from gateway.auth import caller
from gateway.bus import Bus
from shop.contracts.commands import Actor
from shop.contracts.replies import Reply
from shop.errors import ValidationFailed

T = TypeVar("T")

# what route handlers declare to receive the dependencies the app provides
BusDependency = NamedDependency[Bus]
Caller = NamedDependency[Actor | None]
RequestId = NamedDependency[str]
MinPosition = NamedDependency[int]


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


def query_response(reply: Reply, view: type[T]) -> Response[T]:
    headers = {"X-Consistency": reply.consistency or "fresh", "X-Read-Position": str(reply.read_position or 0)}
    return Response(msgspec.json.decode(reply.result, type=view), headers=headers)
