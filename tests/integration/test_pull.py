"""The pull reader against real JetStream: a reader that was busy while its pull requests expired asks
again before it waits, so the next event is not held back for a whole wait."""

import asyncio

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shop import messaging
from shop.messaging import EVENTS_STREAM
from shop.projection.pull import Pull
from tests.conftest import NatsServer


async def test_an_event_after_the_pull_requests_expired_under_a_busy_reader_comes_at_once(tmp_path):
    server = NatsServer(tmp_path / "nats")
    reader = await server.connect("projector-catalog")
    writer = await server.connect("command-service")  # the one user that may publish events
    try:
        await messaging.ensure_streams(reader)
        config = ConsumerConfig(
            durable_name="catalog", deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.NONE, mem_storage=True
        )
        await reader.jetstream().add_consumer(EVENTS_STREAM, config)
        pull = Pull(reader, EVENTS_STREAM, "catalog", batch=5, expires=0.3)
        await pull.start()
        await asyncio.sleep(1)  # writing a batch, say: every request ends (408) meanwhile, and nobody takes
        seq = (await writer.jetstream().publish("evt.product.test", b"{}")).seq
        loop = asyncio.get_running_loop()
        asked = loop.time()
        taken = await pull.take(5, timeout=3)
        waited = loop.time() - asked
        await pull.stop()
    finally:
        await writer.close()
        await reader.close()
        server.stop()
    assert [d.stream_seq for d in taken] == [seq]
    assert waited < 1, f"the event waited {waited:.2f} s for a pull request"
