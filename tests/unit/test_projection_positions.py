"""The query-service's view of how far each projection has got, against a JetStream stand-in: a position
past the end of the stream is stale at once, and a position that exists is never taken for one."""

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import msgspec
import pytest

from query_service.adapters.positions import ProjectionPositions
from shop.projection.engine import Position
from shop.read_models import CATALOG, PROJECTORS


class Stream:
    """A NATS connection whose EVENTS stream ends at `last_seq`; stream_info takes a moment, as a round trip does."""

    def __init__(self, last_seq: int) -> None:
        self.last_seq, self.asked, self.announce = last_seq, 0, None

    def jetstream(self):
        return self

    async def stream_info(self, name: str):
        self.asked += 1
        last_seq = self.last_seq  # (what the server had when the call reached it)
        await asyncio.sleep(0.005)
        return SimpleNamespace(state=SimpleNamespace(last_seq=last_seq))

    async def subscribe(self, subject: str, cb) -> None:
        self.announce = cb


@pytest.fixture
def stream() -> Stream:
    return Stream(last_seq=10)


@pytest.fixture
async def positions(stream) -> AsyncIterator[ProjectionPositions]:
    async def nothing_yet(name: str = CATALOG) -> Position:
        return Position(projector=name, position=0, searchable=0)

    positions = ProjectionPositions(stream, {name: nothing_yet for name in PROJECTORS}, {})
    await positions.start()
    yield positions
    await positions.stop()


async def announce(stream: Stream, position: int) -> None:
    data = msgspec.json.encode(Position(projector=CATALOG, position=position))
    await stream.announce(SimpleNamespace(data=data))


async def test_a_position_past_the_end_of_the_stream_is_stale_at_once(positions):
    assert not await asyncio.wait_for(positions.wait_for(CATALOG, 1_000_000, timeout=30), 1)


async def test_a_position_written_just_after_another_read_looked_at_the_streams_end_is_waited_for(stream, positions):
    assert not await positions.wait_for(CATALOG, 1_000_000, timeout=30)  # (it looked: the stream ends at 10)
    stream.last_seq = 11  # a command commits position 11, and its caller reads it at once
    read = asyncio.create_task(positions.wait_for(CATALOG, 11, timeout=30))
    await asyncio.sleep(0.02)
    assert not read.done()  # waiting for the projection, not told "stale"
    await announce(stream, 11)
    assert await asyncio.wait_for(read, 1)


async def test_reads_past_the_end_at_the_same_time_share_their_look_at_the_stream(stream, positions):
    reads = [positions.wait_for(CATALOG, 1_000 + n, timeout=30) for n in range(200)]
    assert not any(await asyncio.wait_for(asyncio.gather(*reads), 1))
    assert stream.asked <= 2
