"""The projection engine against real NATS JetStream and OpenSearch: the checkpoint lives in the read
model's store, poison parks only its aggregate, a re-drive unparks it, a deleted consumer comes back."""

import asyncio
import uuid

import msgspec
import pytest

from projector_catalog.documents import MAPPING, product_document
from shop import messaging
from shop.contracts.events import DomainEvent, ProductCreated, ProductRestocked
from shop.messaging import DLQ_STREAM, EVENTS_STREAM
from shop.projection import dlq
from shop.projection.dlq import dead_letters
from shop.projection.documents import DocumentReadModel, open_client
from shop.projection.engine import Checkpoint, Projector, Scope, partition
from shop.projection.rebuild import Rebuild
from tests.conftest import OPENSEARCH_URL, NatsServer
from tests.envelopes import envelope


def event(stream_id: str, version: int, domain_event: DomainEvent, **options) -> bytes:
    return msgspec.json.encode(envelope(stream_id, version, domain_event, **options))


def created(name: str = "Mug", category: str = "c") -> ProductCreated:
    return ProductCreated(name=name, description="", price=100, stock=1, category=category, seller_id="s")


@pytest.fixture
async def nc(tmp_path):
    server = NatsServer(tmp_path / "nats")
    connection = await server.connect("projector-catalog")
    await messaging.ensure_streams(connection)
    connection.events = await server.connect("command-service")  # the one user that may publish events
    yield connection
    await connection.events.close()
    await connection.close()
    server.stop()


@pytest.fixture
async def catalog():
    client = open_client(OPENSEARCH_URL)
    prefix = f"test-{uuid.uuid4().hex[:8]}-"
    yield DocumentReadModel(client, f"{prefix}products", prefix, MAPPING, "product", product_document)
    await client.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
    await client.close()


async def publish(nc, *payloads: bytes) -> int:
    for payload in payloads:
        last = (await nc.events.jetstream().publish("evt.product.test", payload)).seq
    return last


async def running(nc, catalog, name: str = "catalog") -> Projector:
    projector = Projector(nc, name, await catalog.active(), retry_first=0.01)
    await projector.start()
    return projector


async def passed(projector: Projector, position: int, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while projector.position < position:
        assert asyncio.get_running_loop().time() < deadline, (projector.position, projector.failure)
        await asyncio.sleep(0.02)


async def document(catalog, product_id: str) -> dict | None:
    store = await catalog.active()
    found = await store._client.mget(index=store.name, body={"ids": [product_id]})
    doc = found["docs"][0]
    return doc["_source"] if doc.get("found") else None


async def test_the_checkpoint_is_kept_in_the_store_and_a_new_process_resumes_from_it(nc, catalog):
    p1 = str(uuid.uuid4())
    last = await publish(nc, event(p1, 1, created()), event(p1, 2, ProductRestocked(quantity=5)))
    first = await running(nc, catalog)
    await passed(first, last)
    await first.stop()
    await nc.jetstream().delete_consumer(EVENTS_STREAM, "catalog")  # nothing left in NATS of where it was

    assert (await (await catalog.active()).checkpoints(1, [0]))[0].position == last
    last = await publish(nc, event(p1, 3, ProductRestocked(quantity=1)))
    second = await running(nc, catalog)
    await passed(second, last)
    await second.stop()
    assert (await document(catalog, p1))["stock"] == 7
    # the checkpoints' index asks for no replica a single node cannot hold
    health = await catalog._client.cluster.health(index=catalog._state_index)
    assert health["status"] == "green", health


async def test_a_poison_event_parks_only_its_aggregate_and_a_redrive_unparks_it(nc, catalog):
    poisoned, healthy = str(uuid.uuid4()), str(uuid.uuid4())
    projector = await running(nc, catalog)
    try:
        sent = await publish(
            nc,
            event(poisoned, 1, created()),
            b"this is not an event",
            event(poisoned, 3, ProductRestocked(quantity=100)),  # v2 has not come: rejected, the product parked
            event(healthy, 1, created("Cup")),
            event(poisoned, 2, ProductRestocked(quantity=5)),  # parked behind v3: straight to the DLQ
            event(healthy, 2, ProductRestocked(quantity=2)),
        )
        await passed(projector, sent, timeout=5)  # no retry stall for what is parked

        letters = await dead_letters(nc, "catalog")
        assert [d.event.split()[-1] for d in letters] == ["(undecodable)", "v3", "v2"]
        assert "v3 came before v2" in letters[1].error and "parked behind" in letters[2].error
        assert projector.checkpoint.parked == {poisoned: letters[1].stream_seq}
        assert (await document(catalog, healthy))["stock"] == 3  # the other aggregate flowed on
        assert (await document(catalog, poisoned))["version"] == 1

        # the operator re-drives the parked product's letters (v3 then v2): v3 is still out of order
        rejected = await projector.redrive([(d.stream_seq, d.data) for d in letters[1:]])
        assert set(rejected) == {letters[1].stream_seq, letters[2].stream_seq}
        assert poisoned in projector.checkpoint.parked

        # in stream order (v2, v3) they apply, and the product is unparked
        ordered = sorted(letters[1:], key=lambda d: msgspec.json.decode(d.data)["version"])
        assert await projector.redrive([(d.stream_seq, d.data) for d in ordered]) == {}
        assert projector.checkpoint.parked == {}
        later = await publish(nc, event(poisoned, 4, ProductRestocked(quantity=1)))
        await passed(projector, later)
    finally:
        await projector.stop()
    assert (await document(catalog, poisoned))["stock"] == 107
    assert (await (await catalog.active()).checkpoints(1, [0]))[0].parked == {}


async def test_a_document_the_store_refuses_is_poison_and_parks_its_aggregate(nc, catalog):
    refused, fine = str(uuid.uuid4()), str(uuid.uuid4())
    projector = await running(nc, catalog)
    try:
        sent = await publish(
            nc,
            event(refused, 1, created(category="x" * 40_000)),  # a keyword over 32 kB: OpenSearch says 400
            event(fine, 1, created()),
            event(refused, 2, ProductRestocked(quantity=1)),
        )
        await passed(projector, sent)
    finally:
        await projector.stop()
    letters = await dead_letters(nc, "catalog")
    assert [d.stream_seq for d in letters] == [1, 3]
    assert "OpenSearch refused the document: 400" in letters[0].error
    assert await document(catalog, refused) is None and await document(catalog, fine) is not None


async def test_a_deleted_consumer_is_recreated_without_a_restart(nc, catalog):
    js, p1 = nc.jetstream(), str(uuid.uuid4())
    projector = await running(nc, catalog)
    try:
        await passed(projector, await publish(nc, event(p1, 1, created())))
        await js.delete_consumer(EVENTS_STREAM, "catalog")
        later = await publish(nc, event(p1, 2, ProductRestocked(quantity=4)))
        await passed(projector, later)
        await js.consumer_info(EVENTS_STREAM, "catalog")  # there again
    finally:
        await projector.stop()
    assert (await document(catalog, p1))["stock"] == 5
    assert (await js.stream_info(DLQ_STREAM)).state.messages == 0


async def test_a_document_store_changing_its_partitions_starts_from_what_the_other_partitioning_stored(catalog):
    store = await catalog.active()
    for p, position in enumerate((60, 55, 70, 65)):
        await store.commit(Checkpoint(position=position), Scope(4, {p: 0}))
    await catalog._client.indices.refresh(index=catalog._state_index)
    assert await store.checkpoints(1, [0]) == {0: Checkpoint(position=55)}  # 4 -> 1: the lowest
    await store.commit(Checkpoint(position=80))
    assert [c.position for c in (await store.checkpoints(2, [0, 1])).values()] == [80, 80]  # 1 -> 2


async def test_partitions_gained_are_projected_from_their_own_checkpoints(nc, catalog):
    """A projector of partitions 0-3 of 8 applies only their products; given all eight, it claims nothing of
    the new ones until it has read their checkpoints, and then projects them from there."""
    products = [str(uuid.uuid4()) for _ in range(24)]
    last = await publish(nc, *(event(p, 1, created()) for p in products))
    mine = {p for p in products if partition(p, 8) < 4}
    assert mine and mine != set(products)
    projector = Projector(nc, "catalog", await catalog.active(), partitions=8, owned=frozenset(range(4)))
    await projector.start()
    try:
        await passed(projector, last)
        assert {p for p in products if await document(catalog, p)} == mine
        await projector.reassign(frozenset(range(8)))
        assert projector.position == 0  # partitions 4-7 have stored nothing yet
        await passed(projector, last)
    finally:
        await projector.stop()
    assert all([await document(catalog, p) for p in products])
    stored = await (await catalog.active()).checkpoints(8, range(8))
    assert {c.position for c in stored.values()} == {last}


async def test_a_generation_made_by_several_processes_at_once_is_made_once(catalog):
    """A rebuild and the processes helping it open the new generation at the same moment: each gets it."""
    name = await catalog.next_generation()
    stores = await asyncio.gather(*(catalog.generation(name) for _ in range(4)))
    assert {store.name for store in stores} == {name}
    assert await catalog._client.indices.exists(index=name)


async def test_dead_letters_are_read_in_batches_and_one_by_one_from_a_dlq_an_older_version_made(tmp_path, monkeypatch):
    """Each projector's letters come back complete and in order across several batched direct gets; from a
    DLQ that does not allow direct gets (as an older version made it) one by one, until the command-service
    mends it."""
    server = NatsServer(tmp_path / "nats")
    catalog, analytics = await server.connect("projector-catalog"), await server.connect("projector-analytics")
    ops, command = await server.connect("ops"), await server.connect("command-service")
    try:
        await messaging.ensure_streams(command, mend=True)
        sent = {"catalog": [], "analytics": []}
        for i in range(15):
            name, nc = ("catalog", catalog) if i % 3 else ("analytics", analytics)
            headers = {"Shop-Stream-Seq": str(100 + i), "Shop-Error": f"why {i}"}
            await nc.jetstream().publish(f"dlq.{name}", b"letter %d" % i, headers=headers)
            sent[name].append((100 + i, f"why {i}", b"letter %d" % i))
        monkeypatch.setattr(dlq, "LETTERS_PER_REQUEST", 4)  # three batches and a bit of catalog's ten

        def read(letters):
            return [(d.stream_seq, d.error, d.data) for d in letters]

        async def not_one_by_one(js, subject):
            raise AssertionError("read one by one although the DLQ allows direct gets")

        with monkeypatch.context() as batched_only:
            batched_only.setattr(dlq, "_letters_one_by_one", not_one_by_one)
            for name, nc in (("catalog", catalog), ("analytics", analytics)):
                assert read(await dead_letters(nc, name)) == sent[name]
            assert len(await dead_letters(catalog)) == 15

        config = (await ops.jetstream().stream_info(DLQ_STREAM)).config
        config.allow_direct = False
        await ops.jetstream().update_stream(config)
        assert read(await dead_letters(catalog, "catalog")) == sent["catalog"]

        await messaging.ensure_streams(catalog)  # a projector does not mend it (it may not)
        assert not (await ops.jetstream().stream_info(DLQ_STREAM)).config.allow_direct
        await messaging.ensure_streams(command, mend=True)
        assert (await ops.jetstream().stream_info(DLQ_STREAM)).config.allow_direct
    finally:
        for nc in (catalog, analytics, ops, command):
            await nc.close()
        server.stop()


async def test_stopping_a_rebuild_ends_it_even_when_a_cancellation_is_swallowed(nc, catalog):
    """On Python 3.11 a cancellation landing as a NATS request completes can be swallowed; the rebuild's
    stop repeats it rather than waiting for ever (a DELETE /rebuild once hung in CI)."""
    rebuild = Rebuild(nc, "catalog", catalog, Projector(nc, "catalog", await catalog.active()))
    swallowed = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.append(True)
        await asyncio.sleep(3600)  # as the paused replay goes on

    rebuild._task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(rebuild.stop(), timeout=10)
    assert swallowed and rebuild._task.done()
