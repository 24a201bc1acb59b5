"""GET /v1/sync: Server-Sent Events telling an app how far each projection has got, so that it can
refresh once the `position` of its write has been passed."""

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable

import msgspec
from litestar import Controller, Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from gateway.auth import USER, token_expiry
from gateway.dependencies import BusDependency, Caller, RequestId
from gateway.problems import problems
from shop.contracts.queries import GetSyncPositions
from shop.contracts.views import SyncPositions
from shop.errors import RateLimited
from shop.projection.engine import Position, Progress, position_decoder, position_subject

HEARTBEAT = 15.0  # seconds between keep-alive comments on a quiet stream


class PositionFeed:
    """One NATS subscription per gateway process to the projections' position announcements, fanned
    out to every open stream; at most `per_user` streams per user and `total` in this process."""

    def __init__(self, per_user: int, total: int) -> None:
        self._per_user, self._total = per_user, total
        self._listeners: dict[asyncio.Queue[Position], str] = {}
        self._subscription = None

    async def start(self, nc: NATS) -> None:
        self._subscription = await nc.subscribe(position_subject("*"), cb=self._on_position)

    async def _on_position(self, msg: Msg) -> None:
        try:
            position = position_decoder.decode(msg.data)
        except msgspec.MsgspecError:
            return
        for queue in self._listeners:
            try:
                queue.put_nowait(position)
            except asyncio.QueueFull:
                pass  # a slow reader skips positions; the next one supersedes them anyway

    def listen(self, user_id: str) -> asyncio.Queue[Position]:
        if len(self._listeners) >= self._total:
            raise RateLimited(f"this gateway already serves {self._total} sync streams; retry later")
        if sum(1 for user in self._listeners.values() if user == user_id) >= self._per_user:
            raise RateLimited(f"at most {self._per_user} sync streams per user")
        queue: asyncio.Queue[Position] = asyncio.Queue(maxsize=1000)
        self._listeners[queue] = user_id
        return queue

    def leave(self, queue: asyncio.Queue[Position]) -> None:
        self._listeners.pop(queue, None)


class SyncController(Controller):
    path = "/v1/sync"
    tags = ["sync"]
    guards = USER

    @get(
        "/",
        media_type="text/event-stream",
        responses=problems(401),
        summary="Projection progress as Server-Sent Events (event: position)",
    )
    async def sync(self, request: Request, bus: BusDependency, actor: Caller, request_id: RequestId) -> ServerSentEvent:
        feed: PositionFeed = request.app.state.feed
        announcements = feed.listen(actor.user_id)  # before the snapshot: nothing announced in between is lost
        try:
            reply = await bus.query(GetSyncPositions(), actor, request_id, 0)
        except BaseException:
            feed.leave(announcements)
            raise
        current = msgspec.json.decode(reply.result, type=SyncPositions).positions
        # the stream ends when the token expires or at the latest after sync_max_lifetime; the app reconnects
        lifetime = min(request.app.state.settings.sync_max_lifetime, token_expiry(request) - time.time())
        partitions = request.app.state.settings.projection_partitions
        stream = progress(announcements, current, lifetime, lambda: feed.leave(announcements), partitions)
        weakref.finalize(stream, feed.leave, announcements)  # also when the stream never starts
        return ServerSentEvent(stream)


async def progress(
    announcements: asyncio.Queue[Position],
    current: dict[str, int],
    lifetime: float,
    leave: Callable[[], None],
    partitions: int = 1,
) -> AsyncIterator[ServerSentEventMessage]:
    """First every projection's position, then each advance as it is announced, for `lifetime` seconds. A
    projector's position is the lowest of its partitions' (each process announces those it projects)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + lifetime
    tracked = {name: Progress(name, partitions) for name in current}
    try:
        for projector, position in current.items():
            tracked[projector].update(Position(projector=projector, position=position), exact=True)
            yield position_message(projector, position)
        while (left := ends - loop.time()) > 0:
            try:  # (not wait_for: on 3.11 its extra task costs two turns of a busy loop per announcement)
                async with asyncio.timeout(min(HEARTBEAT, left)):
                    announced = await announcements.get()
            except TimeoutError:
                if ends - loop.time() > 0:
                    yield ServerSentEventMessage(comment="keep-alive")
                continue
            found = tracked.get(announced.projector)
            if found is None:
                continue
            before = found.position
            found.update(announced, exact=False)
            if found.position > before:
                yield position_message(announced.projector, found.position)
    finally:
        leave()


def position_message(projector: str, position: int) -> ServerSentEventMessage:
    data = msgspec.json.encode({"projector": projector, "position": position}).decode()
    return ServerSentEventMessage(event="position", data=data, id=f"{projector}:{position}")
