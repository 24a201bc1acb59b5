"""GET /v1/sync: Server-Sent Events telling an app how far each projection has got, so that it can
refresh once the `position` of its write has been passed."""

import asyncio
from collections.abc import AsyncIterator

import msgspec
from litestar import Controller, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from gateway.auth import require_user
from gateway.dependencies import BusDependency, Caller, RequestId
from shop.contracts.queries import GetSyncPositions
from shop.contracts.views import SyncPositions

HEARTBEAT = 15.0  # seconds between keep-alive comments on a quiet stream


class SyncController(Controller):
    path = "/v1/sync"
    tags = ["sync"]

    @get("/", summary="Projection progress as Server-Sent Events (event: position)")
    async def sync(self, bus: BusDependency, actor: Caller, request_id: RequestId) -> ServerSentEvent:
        require_user(actor)
        reply = await bus.query(GetSyncPositions(), actor, request_id, 0)
        current = msgspec.json.decode(reply.result, type=SyncPositions).positions
        return ServerSentEvent(progress(bus, current))


async def progress(bus: BusDependency, current: dict[str, int]) -> AsyncIterator[ServerSentEventMessage]:
    """First every projection's position, then each advance as it is announced."""
    for projector, position in current.items():
        yield position_message(projector, position)
    async with bus.positions() as announcements:
        while True:
            try:
                announced = await asyncio.wait_for(announcements.get(), HEARTBEAT)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            if announced.position > current.get(announced.projector, 0):
                current[announced.projector] = announced.position
                yield position_message(announced.projector, announced.position)


def position_message(projector: str, position: int) -> ServerSentEventMessage:
    data = msgspec.json.encode({"projector": projector, "position": position}).decode()
    return ServerSentEventMessage(event="position", data=data, id=f"{projector}:{position}")
