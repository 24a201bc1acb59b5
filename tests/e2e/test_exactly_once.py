"""Exactly-once effect (DESIGN §5.2): duplicated and redelivered events leave every read model as it was."""

import asyncio
import uuid

import nats
import pytest

from shop.messaging import EVENTS_STREAM
from shop.read_models import PROJECTORS
from tests.e2e.histories import history, read_models

pytestmark = pytest.mark.e2e


async def caught_up(js, last: int) -> None:
    """Every projector's consumer has acknowledged the whole stream up to `last`."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        infos = [await js.consumer_info(EVENTS_STREAM, name) for name in PROJECTORS]
        if all(i.ack_floor.stream_seq >= last and i.num_pending == 0 for i in infos):
            return
        assert asyncio.get_running_loop().time() < deadline, [(i.name, i.ack_floor, i.num_pending) for i in infos]
        await asyncio.sleep(0.05)


@pytest.fixture
async def js(system):
    nc = await nats.connect(system.nats_url)
    yield nc.jetstream()
    await nc.close()


async def test_events_published_twice_change_nothing(client, system, js):
    products, orders, position = await history(client, system)
    before = await read_models(client, system, products, orders, position)

    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    for seq in range(1, last + 1):  # every event again, under new message ids so JetStream keeps them
        original = await js.get_msg(EVENTS_STREAM, seq)
        ack = await js.publish(original.subject, original.data, headers={"Nats-Msg-Id": f"again-{uuid.uuid4()}"})

    assert ack.seq == 2 * last
    assert await read_models(client, system, products, orders, ack.seq) == before


async def test_redelivering_the_whole_stream_after_a_crash_changes_nothing(client, system, js):
    products, orders, position = await history(client, system)
    before = await read_models(client, system, products, orders, position)
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq

    for name in PROJECTORS:  # crash every projector, and forget what its consumer had acknowledged
        system.kill(f"projector-{name}")
        await js.delete_consumer(EVENTS_STREAM, name)
    system.start()
    await caught_up(js, last)

    assert await read_models(client, system, products, orders, position) == before
