"""Loading aggregates from the real event store: snapshots and upcasting of old schemas."""

import msgspec
import pytest

from command_service.adapters.database import create_pool, migrate
from command_service.adapters.event_store import EventStore
from command_service.aggregates import load
from command_service.domain.product import Product
from shop.contracts.events import Envelope, ProductCreated, ProductRestocked
from tests.envelopes import envelope

CREATED = ProductCreated(name="Phone", description="", price=100, stock=0, category="c", seller_id="s")


@pytest.fixture
async def store(database_url):
    pool = await create_pool(database_url, 5)
    await migrate(pool)
    yield EventStore(pool)
    await pool.close()


async def append(store: EventStore, envelopes: list[Envelope]) -> None:
    async with store.session([envelopes[0].stream_id]) as session:
        await session.append(envelopes)


async def test_a_snapshot_is_taken_after_enough_events_and_used_with_the_events_after_it(store):
    await append(
        store, [envelope("p1", 1, CREATED)] + [envelope("p1", v, ProductRestocked(quantity=1)) for v in range(2, 13)]
    )
    async with store.session(["p1"]) as session:
        assert await load(session, "product", "p1", snapshot_every=5) == (
            Product(name="Phone", price=100, stock=11),
            12,
        )
    async with store.session(["p1"]) as session:  # saved with the transaction (here: at its commit)
        assert (await session.load_snapshot("product", "p1"))[1] == 12
        # mark the snapshot, so that loading shows it was read instead of a full replay
        marked = msgspec.json.encode(Product(name="Marked", price=100, stock=1000))
        await session.delete_snapshot("p1")
        await session.save_snapshot("p1", "product", 12, 1, marked)
    await append(store, [envelope("p1", 13, ProductRestocked(quantity=5))])
    async with store.session(["p1"]) as session:
        state, version = await load(session, "product", "p1", snapshot_every=5)
        full, _ = await load(session, "product", "p1", snapshot_every=0)
    assert (state.name, state.stock, version) == ("Marked", 1005, 13)
    assert full.stock == 16  # without snapshots every event is replayed


async def test_a_snapshot_of_another_schema_is_ignored(store):
    await append(store, [envelope("p2", 1, CREATED), envelope("p2", 2, ProductRestocked(quantity=3))])
    async with store.session(["p2"]) as session:
        await session.save_snapshot("p2", "product", 2, 999, b'{"unknown": true}')
        assert await load(session, "product", "p2", snapshot_every=5) == (Product(name="Phone", price=100, stock=3), 2)


async def test_an_event_stored_in_an_old_schema_loads_upcast(store):
    v1 = b'{"name":"Old","description":"from the first release","price":700,"stock":4,"categoryId":"x","sellerId":"s"}'
    await append(
        store, [envelope("p3", 1, CREATED, schema=1, data=v1), envelope("p3", 2, ProductRestocked(quantity=1))]
    )
    async with store.session(["p3"]) as session:
        assert await load(session, "product", "p3") == (Product(name="Old", price=700, stock=5), 2)
        [stored, _] = await session.load("product", "p3")
    assert stored.schema_version == 1 and b"categoryId" in bytes(stored.data)  # never rewritten


async def test_a_snapshot_newer_than_its_stream_is_dropped_and_the_events_replayed(store):
    await append(store, [envelope("p4", 1, CREATED), envelope("p4", 2, ProductRestocked(quantity=3))])
    async with store.session(["p4"]) as session:  # e.g. restored from a later backup than the events
        await session.save_snapshot(
            "p4", "product", 7, 1, msgspec.json.encode(Product(name="Ahead", price=1, stock=99))
        )
        assert await load(session, "product", "p4", snapshot_every=5) == (Product(name="Phone", price=100, stock=3), 2)
        assert await session.load_snapshot("product", "p4") is None
