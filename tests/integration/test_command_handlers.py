"""The command handlers against real PostgreSQL and JetStream: bounded retries on conflicts."""

import time
import uuid

import msgspec
import pytest

from command_service.adapters import relay as relay_module
from command_service.adapters.event_store import EventStore, Session
from command_service.adapters.relay import OutboxRelay, Publisher
from command_service.handlers import CommandHandlers
from shop import messaging
from shop.contracts.commands import Actor, CommandMeta, CommandRequest, CreateProduct, Restock
from shop.contracts.events import ProductRestocked
from shop.errors import ConcurrencyError

ADMIN = CommandMeta(actor=Actor(user_id="a1", roles=("admin",)), correlation_id="c1")


@pytest.fixture
async def handlers(pool, nats):
    nc = await nats.connect("command-service")
    await messaging.ensure_streams(nc)
    relay = OutboxRelay(pool, Publisher(nc), interval=0.05)
    relay.start()
    yield CommandHandlers(
        EventStore(pool), relay, publish_wait=5, idempotency_ttl=60, snapshot_every=0, conflict_attempts=3
    )
    await relay.stop()
    await nc.close()


@pytest.fixture
def rogue_writes(monkeypatch, pool):
    """Before each of the next `n` appends, another writer (bypassing the locks) takes the version."""
    remaining = {"n": 0}
    append = Session.append

    async def append_after_a_rogue_write(self, envelopes, remember=None):
        envelopes = list(envelopes)
        if remaining["n"] > 0 and envelopes:
            remaining["n"] -= 1
            first = envelopes[0]
            rogue = msgspec.structs.replace(
                first,
                event_id=str(uuid.uuid4()),
                type="ProductRestocked",
                data=msgspec.Raw(msgspec.json.encode(ProductRestocked(quantity=100))),
            )
            async with pool.acquire() as other:  # another connection, committed before our append
                await append(Session(other), [rogue])
        return await append(self, envelopes, remember)

    monkeypatch.setattr(Session, "append", append_after_a_rogue_write)
    return remaining


async def create(handlers) -> str:
    command = CreateProduct(name="P", price=10, stock=1, category="c", seller_id="s")
    return (await handlers.handle(CommandRequest(meta=ADMIN, command=command))).id


async def test_a_conflicting_append_is_retried_on_the_new_version(handlers, rogue_writes):
    product_id = await create(handlers)
    rogue_writes["n"] = 1

    result = await handlers.handle(CommandRequest(meta=ADMIN, command=Restock(product_id=product_id, quantity=1)))

    assert result.version == 3  # created v1, the rogue write v2, ours v3 after one retry
    assert result.position is not None


async def test_conflicts_beyond_the_bounded_retries_are_a_concurrency_conflict(handlers, rogue_writes):
    product_id = await create(handlers)
    rogue_writes["n"] = 3

    with pytest.raises(ConcurrencyError):
        await handlers.handle(CommandRequest(meta=ADMIN, command=Restock(product_id=product_id, quantity=1)))
    assert rogue_writes["n"] == 0  # each of the three attempts met a rogue write


async def test_a_command_learns_its_position_when_another_replica_published_its_events(pool, nats):
    nc = await nats.connect("command-service")
    idle = OutboxRelay(pool, Publisher(nc), interval=3600)  # this replica's relay never gets to publish
    other = OutboxRelay(pool, Publisher(nc), interval=0.05)  # another replica's relay does
    other.start()
    try:
        handlers = CommandHandlers(
            EventStore(pool), idle, publish_wait=5, idempotency_ttl=60, snapshot_every=0, conflict_attempts=3
        )
        command = CreateProduct(name="P", price=10, stock=1, category="c", seller_id="s")
        result = await handlers.handle(CommandRequest(meta=ADMIN, command=command))
    finally:
        await other.stop()
        await nc.close()

    stored = await pool.fetchval("select stream_seq from events where stream_id = $1", result.id)
    assert result.position is not None and result.position == stored


async def test_another_replicas_relay_tells_a_waiting_command_at_once(pool, nats, database_url, monkeypatch):
    monkeypatch.setattr(relay_module, "RECHECK", 30.0)  # no look at the table in time: only the notification
    nc = await nats.connect("command-service")
    await messaging.ensure_streams(nc)
    here = OutboxRelay(pool, Publisher(nc), interval=0.05, listen_url=database_url)

    async def lock_held_elsewhere() -> int:
        return 0  # as when another replica's relay holds the lock

    here.flush = lock_held_elsewhere
    other = OutboxRelay(pool, Publisher(nc), interval=0.05)
    here.start()
    other.start()
    try:
        handlers = CommandHandlers(
            EventStore(pool), here, publish_wait=5, idempotency_ttl=60, snapshot_every=0, conflict_attempts=3
        )
        started = time.monotonic()
        command = CreateProduct(name="P", price=10, stock=1, category="c", seller_id="s")
        result = await handlers.handle(CommandRequest(meta=ADMIN, command=command))
        took = time.monotonic() - started
    finally:
        await here.stop()
        await other.stop()
        await nc.close()

    assert result.position == await pool.fetchval("select stream_seq from events where stream_id = $1", result.id)
    assert took < 2.5  # not the 5 s wait's end
