"""The write path's edges against real PostgreSQL and JetStream: positions on every reply, deadlines,
remembered rejections, a pinned isolation level (DESIGN §5.4, §5.5, §5.9)."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from command_service.adapters.database import create_pool, migrate
from command_service.adapters.event_store import EventStore
from command_service.adapters.relay import OutboxRelay
from command_service.handlers import CommandHandlers
from shop.contracts.commands import (
    Actor,
    ChangePrice,
    CommandMeta,
    CommandRequest,
    CreateProduct,
    OrderLine,
    PlaceOrder,
    Restock,
)
from shop.errors import InsufficientStock, Unavailable
from tests.conftest import ADMIN_DATABASE_URL

ADMIN = Actor(user_id="a1", roles=("admin",))
USER = Actor(user_id="u1")


def request(command, actor: Actor = ADMIN, key: str | None = None, deadline: float = 10.0) -> CommandRequest:
    meta = CommandMeta(
        actor=actor,
        correlation_id="c1",
        idempotency_key=key,
        deadline=datetime.now(UTC) + timedelta(seconds=deadline),
    )
    return CommandRequest(meta=meta, command=command)


def handlers_with(pool, relay: OutboxRelay, publish_wait: float = 5) -> CommandHandlers:
    return CommandHandlers(
        EventStore(pool), relay, publish_wait=publish_wait, idempotency_ttl=60, snapshot_every=0, conflict_attempts=3
    )


@pytest.fixture
async def handlers(pool, publisher):
    relay = OutboxRelay(pool, publisher, interval=0.05)
    relay.start()
    yield handlers_with(pool, relay)
    await relay.stop()


async def create(handlers, stock: int = 1, price: int = 10) -> str:
    command = CreateProduct(name="P", price=price, stock=stock, category="c", seller_id="s")
    return (await handlers.handle(request(command))).id


async def stream_seq(pool, stream_id: str) -> int:
    return await pool.fetchval(
        "select stream_seq from events where stream_id = $1 order by version desc limit 1", stream_id
    )


async def test_a_replay_carries_the_position_even_when_the_first_reply_could_not_wait_for_it(pool, publisher):
    idle = OutboxRelay(pool, publisher, interval=3600)  # this replica's relay does not publish in time
    slow = handlers_with(pool, idle, publish_wait=0.05)
    key = str(uuid.uuid4())
    command = CreateProduct(name="P", price=10, stock=1, category="c", seller_id="s")

    first = await slow.handle(request(command, key=key))
    other = OutboxRelay(pool, publisher, interval=0.05)  # another replica's relay publishes later
    other.start()
    try:
        deadline = time.monotonic() + 10
        while await stream_seq(pool, first.id) is None:
            assert time.monotonic() < deadline, "never published"
            await asyncio.sleep(0.02)
        replayed = await slow.handle(request(command, key=key))
    finally:
        await other.stop()

    assert first.position is None  # committed, not yet published within the wait
    assert replayed.id == first.id
    assert replayed.position is not None and replayed.position == await stream_seq(pool, first.id)


async def test_a_command_that_changes_nothing_carries_the_position_of_the_streams_last_event(handlers, pool):
    product_id = await create(handlers, price=10)

    unchanged = await handlers.handle(request(ChangePrice(product_id=product_id, new_price=10)))

    assert unchanged.version == 1
    assert unchanged.position is not None and unchanged.position == await stream_seq(pool, product_id)


async def test_a_command_waiting_for_a_lock_past_its_deadline_commits_nothing(handlers, pool, database_url):
    product_id = await create(handlers)
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            await blocker.execute("select pg_advisory_xact_lock(hashtextextended($1, 0))", product_id)
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await handlers.handle(request(Restock(product_id=product_id, quantity=5), deadline=1.0))
            assert time.monotonic() - started < 1.5  # gave up by its deadline, not after the lock's release
    finally:
        await blocker.close()

    assert await pool.fetchval("select count(*) from events where stream_id = $1", product_id) == 1


async def test_a_command_arriving_after_its_deadline_is_not_run(handlers, pool):
    product_id = await create(handlers)

    with pytest.raises(Unavailable):
        await handlers.handle(request(Restock(product_id=product_id, quantity=5), deadline=-1.0))

    assert await pool.fetchval("select count(*) from events where stream_id = $1", product_id) == 1


async def test_a_rejection_is_replayed_for_its_key_even_after_its_cause_is_gone(handlers):
    product_id = await create(handlers, stock=1)
    key = str(uuid.uuid4())
    order = PlaceOrder(items=(OrderLine(product_id=product_id, quantity=5),))

    with pytest.raises(InsufficientStock):
        await handlers.handle(request(order, actor=USER, key=key))
    await handlers.handle(request(Restock(product_id=product_id, quantity=10)))

    with pytest.raises(InsufficientStock):
        await handlers.handle(request(order, actor=USER, key=key))


async def test_orders_succeed_when_the_servers_default_isolation_is_repeatable_read(database_url, publisher):
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)  # (the database is the admin's)
    name = database_url.rsplit("/", 1)[1]
    await admin.execute(f"alter database {name} set default_transaction_isolation = 'repeatable read'")
    await admin.close()
    pool = await create_pool(database_url, 30)
    await migrate(pool)
    relay = OutboxRelay(pool, publisher, interval=0.05)
    relay.start()
    try:
        handlers = handlers_with(pool, relay)
        product_id = await create(handlers, stock=30)
        order = PlaceOrder(items=(OrderLine(product_id=product_id, quantity=1),))
        outcomes = await asyncio.gather(
            *(handlers.handle(request(order, actor=USER)) for _ in range(30)), return_exceptions=True
        )
    finally:
        await relay.stop()
        await pool.close()

    assert [o for o in outcomes if isinstance(o, Exception)] == []


async def test_racing_orders_read_what_the_locks_previous_holder_committed(pool, publisher):
    """No retry allowed: an order that read its product before the previous holder's commit would
    append a taken version and fail (the lock and the read are one statement's work: `load_streams`)."""
    relay = OutboxRelay(pool, publisher, interval=0.05)
    relay.start()
    try:
        handlers = CommandHandlers(
            EventStore(pool), relay, publish_wait=5, idempotency_ttl=60, snapshot_every=3, conflict_attempts=1
        )
        product_id = await create(handlers, stock=20)
        order = PlaceOrder(items=(OrderLine(product_id=product_id, quantity=1),))
        outcomes = await asyncio.gather(
            *(handlers.handle(request(order, actor=USER)) for _ in range(20)), return_exceptions=True
        )
    finally:
        await relay.stop()

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    assert await pool.fetchval("select max(version) from events where stream_id = $1", product_id) == 21
