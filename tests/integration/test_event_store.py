"""The event store against a real PostgreSQL."""

import asyncio

import msgspec
import pytest

from command_service.adapters.event_store import EventStore
from shop.contracts.events import ProductStockDecreased
from shop.errors import ConcurrencyError, Unavailable
from tests.envelopes import envelope

DECREASED = ProductStockDecreased(quantity=1, order_id="o")


async def test_appended_events_load_in_version_order_with_an_outbox_row_each(pool):
    store = EventStore(pool)
    written = [
        envelope("p1", 1, DECREASED),
        envelope("p1", 2, DECREASED),
    ]
    async with store.session(["p1"]) as session:
        await session.append(written)
    async with store.session(["p1"]) as session:
        loaded = await session.load("product", "p1")

    def plain(events):
        return [(e.event_id, e.version, msgspec.json.decode(e.data)) for e in events]

    assert plain(loaded) == plain(written)
    assert await pool.fetchval("select count(*) from outbox") == 2


async def test_a_taken_version_is_a_concurrency_error_and_nothing_is_written(pool):
    store = EventStore(pool)
    async with store.session(["p1"]) as session:
        await session.append([envelope("p1", 1, DECREASED)])
    with pytest.raises(ConcurrencyError):
        async with store.session(["p1", "p2"]) as session:
            await session.append(
                [
                    envelope("p2", 1, DECREASED),
                    envelope("p1", 1, DECREASED),
                ]
            )
    assert await pool.fetchval("select count(*) from events") == 1
    assert await pool.fetchval("select count(*) from outbox") == 1


async def test_sessions_on_the_same_stream_queue_instead_of_conflicting(pool):
    store = EventStore(pool)

    async def append_next() -> None:
        async with store.session(["p1"]) as session:
            version = len(await session.load("product", "p1")) + 1
            await asyncio.sleep(0.01)  # widen the window between read and write
            await session.append([envelope("p1", version, DECREASED)])

    await asyncio.gather(*(append_next() for _ in range(10)))
    versions = await pool.fetch("select version from events where stream_id = 'p1' order by version")
    assert [r["version"] for r in versions] == list(range(1, 11))


async def test_a_remembered_reply_expires_after_its_time_to_live(pool):
    store = EventStore(pool)
    async with store.session(["idempotency:u1:k1"]) as session:
        await session.remember_reply("u1", "k1", b"hash", b'{"id":"x"}', 7)
    async with store.session(["idempotency:u1:k1"]) as session:
        assert await session.remembered_reply("u1", "k1", b"hash", ttl=3600) == (b'{"id":"x"}', 7)
        assert await session.remembered_reply("u1", "k1", b"hash", ttl=0) is None
        assert await session.remembered_reply("u2", "k1", b"hash", ttl=3600) is None
    assert await store.forget_expired_replies(ttl=0) == 1


async def test_a_streams_lock_is_the_same_whatever_characters_its_id_holds(pool):
    """Stream ids reach the locks as parameters: quotes and other characters are data, never SQL."""
    odd = "p'); select pg_sleep(5); --ü\\"
    store = EventStore(pool)
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("select pg_advisory_xact_lock(hashtextextended($1, 0))", odd)
        loop = asyncio.get_running_loop()
        with pytest.raises(Unavailable):
            async with store.session([odd], commit_by=loop.time() + 0.5) as session:
                await session.load("product", odd)  # the session's first statement takes its locks
    async with store.session([odd]) as session:
        await session.append([envelope(odd, 1, DECREASED)])
    assert await pool.fetchval("select count(*) from events where stream_id = $1", odd) == 1
