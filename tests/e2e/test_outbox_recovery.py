"""No lost event (DESIGN §5.1): what the command-service committed in PostgreSQL reaches JetStream even
if the process dies between commit and publish, and exactly once (outbox + relay + `Nats-Msg-Id` dedup).

These tests SIGKILL the command-service of the shared `system` and start it again with deploy/services.sh;
`killable_system` starts whatever is down afterwards, so a failing test leaves the system running."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import msgspec
import pytest
from nats.aio.client import Client as NATS

from command_service.adapters.event_store import Session
from command_service.adapters.relay import RELAY_LOCK
from shop.contracts.events import Envelope, ProductCreated, ProductStockDecreased, envelope_decoder
from shop.messaging import EVENTS_STREAM
from tests.envelopes import envelope

pytestmark = pytest.mark.e2e

PRODUCT = {"name": "Survivor", "price": 2_500, "stock": 7, "category": "recovery", "seller_id": "s-1"}


@pytest.fixture
def killable_system(system) -> Iterator:
    """The shared system, whose processes the test may kill: what is down is started again afterwards."""
    yield system
    system.start()


@pytest.fixture
async def event_store(system) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the command-service's own PostgreSQL database."""
    conn = await asyncpg.connect(system.database_url)
    yield conn
    await conn.close()  # also releases the relay's lock if a failed test still holds it


@pytest.fixture
async def nc(system) -> AsyncIterator[NATS]:
    connection = await system.nats.connect("ops")
    yield connection
    await connection.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Polls `check` until it is true; fails after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def outbox_rows(event_store: asyncpg.Connection) -> int:
    return await event_store.fetchval("select count(*) from outbox")


async def outbox_drained(event_store: asyncpg.Connection) -> None:
    async def empty() -> bool:
        return await outbox_rows(event_store) == 0

    await eventually(empty, "the outbox is empty")


@dataclass(frozen=True)
class Published:
    sequence: int
    msg_id: str
    event: Envelope


async def last_sequence(nc: NATS) -> int:
    return (await nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq


async def published_after(nc: NATS, sequence: int) -> list[Published]:
    """The messages of the EVENTS stream after `sequence`, in stream order."""
    js = nc.jetstream()
    messages = [await js.get_msg(EVENTS_STREAM, seq) for seq in range(sequence + 1, await last_sequence(nc) + 1)]
    return [Published(m.seq, m.headers["Nats-Msg-Id"], envelope_decoder.decode(m.data)) for m in messages]


async def test_events_committed_before_a_crash_are_published_once_after_the_restart(
    client, killable_system, event_store, nc
):
    system = killable_system
    sequence_before = await last_sequence(nc)
    created = await client.post("/v1/admin/products", json=PRODUCT, headers=system.token("boss", "admin"))
    assert created.status_code == 201, created.text
    already_published = await event_store.fetchrow(
        "select event_id::text, global_position from events where stream_id = $1", created.json()["id"]
    )
    await outbox_drained(event_store)
    system.kill("command-service")

    # what a death between commit and publish leaves: committed events with their outbox rows, and the
    # outbox row of an event published just before the death, whose delete was never committed
    product_id = str(uuid.uuid4())
    lost = [
        envelope(product_id, 1, ProductCreated(**PRODUCT, description="")),
        envelope(product_id, 2, ProductStockDecreased(quantity=2, order_id=str(uuid.uuid4()))),
    ]
    async with event_store.transaction():
        await Session(event_store).append(lost)
        await event_store.execute("insert into outbox values ($1)", already_published["global_position"])
    assert await outbox_rows(event_store) == 3

    system.start()
    await outbox_drained(event_store)

    published = await published_after(nc, sequence_before)
    assert [m.msg_id for m in published] == [already_published["event_id"], *(e.event_id for e in lost)]
    recovered = published[1:]
    assert [(m.event.event_id, m.event.version, m.event.type) for m in recovered] == [
        (e.event_id, e.version, e.type) for e in lost
    ]
    assert [msgspec.json.decode(m.event.data) for m in recovered] == [msgspec.json.decode(e.data) for e in lost]
    print(f"\n{len(recovered)} events recovered after the kill; the re-published one was dropped by JetStream")

    token = {"X-Consistency-Token": str(recovered[-1].sequence)}
    product = await client.get(f"/v1/products/{product_id}", headers=token)
    assert product.status_code == 200 and product.headers["X-Consistency"] == "fresh", product.text
    assert (product.json()["name"], product.json()["stock"], product.json()["version"]) == ("Survivor", 5, 2)


async def test_a_command_service_killed_while_publishing_loses_and_duplicates_nothing(killable_system, event_store, nc):
    """Everything committed during the test is in the stream after the kill and restart, each event once."""
    system = killable_system
    await outbox_drained(event_store)
    position_before = await event_store.fetchval("select coalesce(max(global_position), 0) from events")
    sequence_before = await last_sequence(nc)
    category = f"kill-{uuid.uuid4().hex[:8]}"
    first_published = asyncio.get_running_loop().create_future()

    async def on_created(msg) -> None:
        if category in msg.data.decode() and not first_published.done():
            first_published.set_result(None)

    async def all_committed() -> bool:
        return await event_store.fetchval("select count(*) from events where data->>'category' = $1", category) == 30

    await nc.subscribe("evt.product.ProductCreated", cb=on_created)
    async with httpx.AsyncClient(base_url=system.gateway, timeout=30) as gateway:
        # the relay's lock, held as by a stuck replica, keeps the 30 creations committed but unpublished
        await event_store.execute("select pg_advisory_lock($1)", RELAY_LOCK)
        product, admin = {**PRODUCT, "category": category}, system.token("boss", "admin")
        creations = [
            asyncio.create_task(gateway.post("/v1/admin/products", json=product, headers=admin)) for _ in range(30)
        ]
        await eventually(all_committed, "30 creations committed")
        # let the relay go, and kill the process as soon as the first of them reaches JetStream
        await event_store.execute("select pg_advisory_unlock($1)", RELAY_LOCK)
        await asyncio.wait_for(first_published, 10)
        system.kill("command-service")
        for creation in creations:  # their replies will never come
            creation.cancel()
        await asyncio.gather(*creations, return_exceptions=True)
    left_in_outbox = await outbox_rows(event_store)
    published_before_restart = len(await published_after(nc, sequence_before))
    assert left_in_outbox == 30, "the kill came after the relay had deleted its batch: nothing left to recover"

    system.start()
    await outbox_drained(event_store)

    committed = await event_store.fetch(
        "select event_id::text from events where global_position > $1 order by global_position", position_before
    )
    published = await published_after(nc, sequence_before)
    assert [m.msg_id for m in published] == [r["event_id"] for r in committed]  # each once, in commit order
    assert len(committed) == 30 and all(m.msg_id == m.event.event_id for m in published)
    print(
        f"\nkilled mid-publish: {left_in_outbox} events recovered from the outbox, {published_before_restart} of them "
        "already in JetStream before the kill (re-published on restart, not duplicated)"
    )
