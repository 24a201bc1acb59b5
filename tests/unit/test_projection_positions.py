"""The query-service's view of how far each projection has got, against a JetStream stand-in: a position
past the end of the stream is stale at once, and a position that exists is never taken for one."""

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import msgspec
import pytest

from query_service.adapters.positions import ProjectionPositions
from shop.projection.engine import Checkpoint, Position, Progress, cancelled, partition, resolve_checkpoints
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
    async def nothing_yet(name: str = CATALOG) -> list[Position]:
        return [Position(projector=name, position=0, searchable=0)]

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


def test_a_partitioned_projection_has_passed_what_every_partition_has_passed():
    """Two processes announce their partitions of 4: the projection's position is the lowest of them;
    an announcement never moves a partition back, the store's checkpoint may; parked aggregates are
    kept by their own partition."""
    progress = Progress(CATALOG, 4)
    progress.update(Position(projector=CATALOG, position=120, searchable=110, partitions=(0, 1)), exact=False)
    assert progress.position == 0  # partitions 2 and 3: nothing said yet
    parked = next(f"order-{i}" for i in range(100) if partition(f"order-{i}", 4) == 3)
    other = next(f"order-{i}" for i in range(100) if partition(f"order-{i}", 4) == 0)
    announced = Position(projector=CATALOG, position=100, parked={parked: 90, other: 95}, partitions=(2, 3))
    progress.update(announced, exact=False)
    assert (progress.position, progress.searchable) == (100, 100)
    assert progress.parked_at(parked) == 90
    assert progress.parked_at(other) is None  # partition 0's own announcement says nothing of it
    progress.update(Position(projector=CATALOG, position=80, partitions=(2, 3)), exact=False)  # an old one
    assert progress.position == 100
    progress.update(Position(projector=CATALOG, position=130, searchable=130, partitions=(2, 3)), exact=False)
    assert (progress.position, progress.searchable) == (120, 110)
    progress.update(Position(projector=CATALOG, position=50, partitions=(3,)), exact=True)  # a rebuilt store
    assert progress.position == 50 and progress.parked_at(parked) is None


def test_a_partition_without_a_checkpoint_starts_from_the_lowest_of_a_complete_other_partitioning():
    """P changed: 1 -> 4 starts each partition where the one left off (its own parked aggregates only);
    4 -> 1 starts at the lowest of the four; a partitioning with a partition missing says nothing."""
    first, third = (next(f"order-{i}" for i in range(100) if partition(f"order-{i}", 4) == p) for p in (1, 3))
    whole = {"": Checkpoint(position=40, parked={first: 7, third: 9})}
    found = resolve_checkpoints(whole, 4, range(4))
    assert [c.position for c in found.values()] == [40] * 4
    assert (found[1].parked, found[2].parked, found[3].parked) == ({first: 7}, {}, {third: 9})

    four = {f"#{p}/4": Checkpoint(position=50 + p, parked={third: 9} if p == 3 else {}) for p in range(4)}
    assert resolve_checkpoints(four, 1, [0]) == {0: Checkpoint(position=50, parked={third: 9})}
    assert resolve_checkpoints(whole | four, 1, [0]) == {0: whole[""]}  # its own first
    del four["#2/4"]
    assert resolve_checkpoints(four, 1, [0]) == {0: Checkpoint()}  # incomplete: from the start
    assert resolve_checkpoints(four | {"": Checkpoint(position=30)}, 8, [5])[5].position == 30


async def test_a_discarded_batch_is_waited_for_and_its_error_dropped():
    async def failing() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("the store went away")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)  # it has started
    await cancelled(task)
    assert task.done()


async def test_discarding_a_batch_does_not_swallow_the_callers_own_cancellation():
    holding = asyncio.Event()

    async def slow_to_cancel() -> None:  # a _bulk that takes a while to give up, as a real one may
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            holding.set()
            await asyncio.sleep(0.5)
            raise

    async def projector_loop() -> str:
        batch = asyncio.create_task(slow_to_cancel())
        await asyncio.sleep(0)  # the batch is on its way to the store
        await cancelled(batch)
        return "went on after its own cancellation"

    loop_task = asyncio.create_task(projector_loop())
    async with asyncio.timeout(5):
        await holding.wait()
    loop_task.cancel()  # the projector stops while it waits for the discarded batch
    with pytest.raises(asyncio.CancelledError):
        await loop_task
