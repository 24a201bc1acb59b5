"""The analytics store against Redis: a batch sent as merged changes leaves the same counters as the
same batch event by event, and a batch the merged script cannot take (applied already, a gap) is
decided event by event."""

import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from redis.asyncio import Redis

from projector_analytics.adapters.counters import AnalyticsStore, Changes
from shop.contracts.events import (
    Envelope,
    OrderCancelled,
    OrderItem,
    OrderPaid,
    OrderPlaced,
    ProductCreated,
    ReviewAdded,
)
from shop.projection.engine import Checkpoint, Event, Scope, partition
from shop.projection.lease import LeaseLost

from ..conftest import REDIS_URL


@pytest.fixture
async def redis():
    client = Redis.from_url(REDIS_URL)
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    yield client, prefix
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


def history() -> list[Event]:
    """Products, reviews and orders, some cancelled, with every aggregate's versions in order."""
    versions: dict[str, int] = {}
    events: list[Event] = []

    def add(stream_id: str, stream_type: str, event) -> None:
        versions[stream_id] = versions.get(stream_id, 0) + 1
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            type=type(event).__name__,
            stream_id=stream_id,
            stream_type=stream_type,
            version=versions[stream_id],
            occurred_at=datetime.now(UTC),
            data=msgspec.Raw(msgspec.json.encode(event)),
        )
        events.append(Event(len(events) + 1, envelope, event))

    products = [f"p{n}" for n in range(5)]
    for n, product in enumerate(products):
        add(
            product,
            "product",
            ProductCreated(name=f"P{n}", description="", price=100 * (n + 1), stock=50, category="c", seller_id="s"),
        )
        add(product, "product", ReviewAdded(user_id="u", rating=n % 5 + 1, text=""))
    for n in range(40):
        items = (
            OrderItem(
                product_id=products[n % 5],
                name=f"P{n % 5}",
                quantity=n % 3 + 1,
                unit_price=100,
                line_total=100 * (n % 3 + 1),
            ),
        )
        placed_at = datetime(2026, 11, 20 + n % 3, 12, tzinfo=UTC)
        order = f"o{n}"
        add(order, "order", OrderPlaced(user_id="u", items=items, total=items[0].line_total, placed_at=placed_at))
        if n % 4 == 0:
            add(order, "order", OrderPaid(by="u"))
        if n % 5 == 0:
            add(order, "order", OrderCancelled(by="u", items=items, total=items[0].line_total, placed_at=placed_at))
    return events


async def counters(redis: Redis, prefix: str) -> dict:
    found = {}
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        kind = await redis.type(key)
        name = key.decode().removeprefix(prefix)
        if kind == b"hash":
            found[name] = await redis.hgetall(key)
        elif kind == b"zset":
            found[name] = await redis.zrange(key, 0, -1, withscores=True)
    return found


async def send(store: AnalyticsStore, events: list[Event], merged: bool) -> dict[int, str]:
    prepared = await store.prepare(events)
    if not merged:
        prepared = Changes(prepared.rejected, prepared.events, None)
    return await store.send(prepared, Checkpoint(position=events[-1].seq))


async def test_merged_batches_leave_the_counters_of_event_by_event_batches(redis):
    client, prefix = redis
    merged, one_by_one = AnalyticsStore(client, f"{prefix}a:"), AnalyticsStore(client, f"{prefix}b:")
    events = history()
    for start in range(0, len(events), 17):
        batch = events[start : start + 17]
        assert (await merged.prepare(batch)).merged is not None  # versions in order: it may go merged
        assert await send(merged, batch, merged=True) == {}
        assert await send(one_by_one, batch, merged=False) == {}
    assert await counters(client, f"{prefix}a:") == await counters(client, f"{prefix}b:")
    assert (await checkpoint(merged)).position == events[-1].seq


async def test_a_batch_applied_already_or_with_a_gap_is_decided_event_by_event(redis):
    client, prefix = redis
    store = AnalyticsStore(client, f"{prefix}a:")
    events = history()
    assert await send(store, events[:30], merged=True) == {}
    before = await counters(client, f"{prefix}a:")
    assert await send(store, events[10:30], merged=True) == {}  # applied already: changes nothing
    assert await counters(client, f"{prefix}a:") == before
    gapped = AnalyticsStore(client, f"{prefix}c:")
    review = events[1]  # the first product's second event, without its first
    assert review.envelope.version == 2
    rejected = await send(gapped, [review], merged=True)
    assert list(rejected) == [review.seq] and "out of order" in rejected[review.seq]
    assert await counters(client, f"{prefix}c:") == {}


async def checkpoint(store: AnalyticsStore) -> Checkpoint:
    return (await store.checkpoints(1, [0]))[0]


@pytest.mark.parametrize("merged", [True, False])
async def test_a_batch_with_a_fencing_token_below_the_highest_seen_changes_nothing(redis, merged):
    """The lease's token goes into the batch's atomic step: a former owner (a lower token) writes nothing."""
    client, prefix = redis
    store = AnalyticsStore(client, f"{prefix}a:", fence=f"{prefix}fence")
    events = history()

    async def prepared(batch: list[Event]) -> Changes:
        found = await store.prepare(batch)
        return found if merged else Changes(found.rejected, found.events, None)

    def token(n: int) -> Scope:
        return Scope(1, {0: n})

    assert await store.send(await prepared(events[:10]), Checkpoint(position=events[9].seq), token(7)) == {}
    before = (await counters(client, f"{prefix}a:"), await checkpoint(store))
    with pytest.raises(LeaseLost):
        await store.send(await prepared(events[10:20]), Checkpoint(position=events[19].seq), token(6))
    assert (await counters(client, f"{prefix}a:"), await checkpoint(store)) == before
    assert await store.send(await prepared(events[10:20]), Checkpoint(position=events[19].seq), token(8)) == {}
    assert (await checkpoint(store)).position == events[19].seq


async def test_each_partition_has_its_checkpoint_and_its_fence(redis):
    """Partitions 1 and 2 of 4: a batch covering both moves both checkpoints; once another writer has taken
    partition 2 (a higher token), a batch of the first writer that covers it changes nothing, while one
    that covers only partition 1 goes on. The partition 0 of one partition keeps the old fields."""
    client, prefix = redis
    store = AnalyticsStore(client, f"{prefix}a:", fence=f"{prefix}fence")
    events = history()
    first = Scope(4, {1: 7, 2: 3})
    assert await store.send(await store.prepare(events[:10]), Checkpoint(position=events[9].seq), first) == {}
    assert {p: c.position for p, c in (await store.checkpoints(4, range(4))).items()} == {
        0: 0,
        1: events[9].seq,
        2: events[9].seq,
        3: 0,
    }
    assert await store.checkpoints(1, [0]) == {0: Checkpoint()}
    await store.commit(Checkpoint(position=events[9].seq), Scope(4, {2: 9}))  # the new owner of partition 2
    before = await counters(client, f"{prefix}a:")
    with pytest.raises(LeaseLost):
        await store.send(await store.prepare(events[10:20]), Checkpoint(position=events[19].seq), first)
    assert await counters(client, f"{prefix}a:") == before
    mine, other = (next(f"order-{i}" for i in range(100) if partition(f"order-{i}", 4) == p) for p in (1, 3))
    parked = {mine: events[15].seq, other: events[16].seq}
    await store.commit(Checkpoint(position=events[19].seq, parked=parked), Scope(4, {1: 7}))
    found = await store.checkpoints(4, [1, 2, 3])
    assert found[1].position == events[19].seq and found[2].position == events[9].seq
    assert found[1].parked == {mine: events[15].seq} and found[3].parked == {}  # each keeps its own


async def test_a_partition_without_a_checkpoint_starts_from_the_one_partition_checkpoint(redis):
    """Going from one partition to four: each starts where the one left off, with its own parked aggregates."""
    client, prefix = redis
    store = AnalyticsStore(client, f"{prefix}a:")
    mine, other = (next(f"order-{i}" for i in range(100) if partition(f"order-{i}", 4) == p) for p in (1, 3))
    await store.commit(Checkpoint(position=40, parked={mine: 7, other: 9}))
    await store.commit(Checkpoint(position=50), Scope(4, {2: 0}))
    found = await store.checkpoints(4, range(4))
    assert {p: c.position for p, c in found.items()} == {0: 40, 1: 40, 2: 50, 3: 40}
    assert (found[1].parked, found[2].parked, found[3].parked) == ({mine: 7}, {}, {other: 9})


async def test_going_back_to_one_partition_starts_from_the_lowest_of_the_partitions(redis):
    client, prefix = redis
    store = AnalyticsStore(client, f"{prefix}a:")
    for p, position in enumerate((60, 55, 70, 65)):
        await store.commit(Checkpoint(position=position), Scope(4, {p: 0}))
    assert await store.checkpoints(1, [0]) == {0: Checkpoint(position=55)}
