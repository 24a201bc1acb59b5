"""The projectors' consume loop against real NATS JetStream and OpenSearch: poison and out-of-order
events go to the DLQ, the loop goes on, nothing is skipped silently."""

import asyncio
import subprocess
import sys
import uuid

import msgspec
import pytest

from projector_catalog.documents import MAPPING, product_document
from shop import messaging
from shop.contracts.events import DomainEvent, ProductCreated, ProductRestocked, ProductStockDecreased
from shop.dlq import DeadLetter, dead_letters, redrive
from shop.messaging import DLQ_STREAM, EVENTS_STREAM
from shop.projection import Projector
from shop.search_index import DocumentProjection, VersionedIndex, open_client
from tests.conftest import OPENSEARCH_URL
from tests.envelopes import envelope


def event(stream_id: str, version: int, domain_event: DomainEvent, **options) -> bytes:
    return msgspec.json.encode(envelope(stream_id, version, domain_event, **options))


CREATED = ProductCreated(name="Mug", description="", price=100, stock=1, category="c", seller_id="s")


@pytest.fixture
async def nc(nats_url):
    connection = await messaging.connect(nats_url, "test-projector")
    await messaging.ensure_streams(connection)
    yield connection
    await connection.close()


@pytest.fixture
async def products():
    client = open_client(OPENSEARCH_URL)
    index = VersionedIndex(client, f"test-{uuid.uuid4().hex[:8]}-products", MAPPING)
    await index.ensure()
    yield index
    await client.indices.delete(index=f"{index.alias}-v1")
    await client.close()


async def test_poison_and_out_of_order_events_go_to_the_dlq_and_the_projector_goes_on(nc, products):
    js, name, p1 = nc.jetstream(), f"catalog-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    sent = [
        event(p1, 1, CREATED),
        b"this is not an event",
        event(str(uuid.uuid4()), 1, CREATED, schema=1, data=b'{"name": "no categoryId"}'),  # cannot be upcast
        event(p1, 3, ProductRestocked(quantity=100)),  # v2 has not come yet
        event(p1, 2, ProductRestocked(quantity=5)),
    ]
    for payload in sent:
        last = (await js.publish("evt.product.test", payload)).seq
    projector = Projector(nc, name, DocumentProjection(products, "product", product_document), retry_delay=0.01)
    await projector.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while projector.position < last:
            assert asyncio.get_running_loop().time() < deadline, projector.position
            await asyncio.sleep(0.05)
        await projector.consumer_ready()  # the loop still runs
    finally:
        await projector.stop(5)
        await js.delete_consumer(EVENTS_STREAM, name)

    doc, version = await products.get(p1)
    assert (doc["stock"], version) == (6, 2)  # v1 and v2 applied; v3 was not applied out of order
    dead = [await js.get_last_msg(DLQ_STREAM, f"dlq.{name}")]
    info = await js.stream_info(DLQ_STREAM, subjects_filter=f"dlq.{name}")
    assert info.state.subjects == {f"dlq.{name}": 3}
    assert "v3 came before v2" in dead[0].headers["Shop-Error"]


class FlushFailsOnce:
    """A projection whose first flush fails after the whole batch was applied: the batch is nak'ed
    and comes again, so every event in it is applied a second time."""

    def __init__(self, inner: DocumentProjection) -> None:
        self.inner, self.failed = inner, False

    async def apply(self, envelope, event, position) -> None:
        await self.inner.apply(envelope, event, position)

    async def flush(self) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("the store went away before the batch was acknowledged")
        await self.inner.flush()


async def test_a_batch_nakked_after_it_was_applied_changes_nothing_when_it_comes_again(nc, products):
    js, name, p1 = nc.jetstream(), f"catalog-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    for payload in (
        event(p1, 1, ProductCreated(name="Mug", description="", price=100, stock=10, category="c", seller_id="s")),
        event(p1, 2, ProductStockDecreased(quantity=3, order_id="o1")),
        event(p1, 3, ProductRestocked(quantity=1)),
    ):
        last = (await js.publish("evt.product.test", payload)).seq
    flaky = FlushFailsOnce(DocumentProjection(products, "product", product_document))
    projector = Projector(nc, name, flaky, retry_delay=0.01)
    await projector.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while projector.position < last:
            assert asyncio.get_running_loop().time() < deadline, projector.position
            await asyncio.sleep(0.05)
    finally:
        await projector.stop(5)
        await js.delete_consumer(EVENTS_STREAM, name)

    assert flaky.failed
    doc, version = await products.get(p1)
    assert (doc["stock"], version) == (8, 3)


async def test_a_dead_letter_re_driven_after_the_missing_event_came_is_applied(nc, products, nats_url):
    js, name, p1 = nc.jetstream(), f"catalog-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    for payload in (event(p1, 1, CREATED), event(p1, 3, ProductRestocked(quantity=100))):
        await js.publish("evt.product.test", payload)
    projector = Projector(nc, name, DocumentProjection(products, "product", product_document), retry_delay=0.01)
    await projector.start()
    try:

        async def v3_dead() -> list[DeadLetter]:  # the stream also holds other tests' poison events
            return [d for d in await dead_letters(js, name) if p1 in d.event]

        await eventually(v3_dead, "v3 is dead-lettered")
        await js.publish("evt.product.test", event(p1, 2, ProductRestocked(quantity=5)))
        listed = subprocess.run(
            [sys.executable, "-m", "shop.dlq", "list", "--projector", name, "--nats-url", nats_url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listed.returncode == 0 and f"ProductRestocked product/{p1} v3" in listed.stdout, listed

        [letter] = await v3_dead()
        await redrive(js, letter)

        async def v3_applied():
            found = await products.get(p1)
            return found and found[1] == 3

        await eventually(v3_applied, "the re-driven v3 is applied")
    finally:
        await projector.stop(5)
        await js.delete_consumer(EVENTS_STREAM, name)
    doc, _ = await products.get(p1)
    assert doc["stock"] == 106
    assert [d for d in await dead_letters(js, name) if p1 in d.event] == []


async def eventually(probe, what: str, timeout: float = 20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await probe()):
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)
    return result
