"""Exactly-once effect (DESIGN §5.2): duplicated and redelivered events leave every read model as it was."""

import uuid

import pytest
from opensearchpy import AsyncOpenSearch
from redis.asyncio import Redis

from shop.messaging import EVENTS_STREAM
from shop.read_models import PROJECTORS, projection_state_index
from tests.conftest import OPENSEARCH_URL, REDIS_URL
from tests.e2e.histories import history, read_models

pytestmark = pytest.mark.e2e


@pytest.fixture
async def js(system):
    """As the command-service: the one user that may publish events."""
    nc = await system.nats.connect("command-service")
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def ops(system):
    """As the operator: reads the stream, deletes consumers."""
    nc = await system.nats.connect("ops")
    yield nc.jetstream()
    await nc.close()


async def test_events_published_twice_change_nothing(client, system, js, ops):
    products, orders, position = await history(client, system)
    before = await read_models(client, system, products, orders, position)

    last = (await ops.stream_info(EVENTS_STREAM)).state.last_seq
    for seq in range(1, last + 1):  # every event again, under new message ids so JetStream keeps them
        original = await ops.get_msg(EVENTS_STREAM, seq)
        ack = await js.publish(original.subject, original.data, headers={"Nats-Msg-Id": f"again-{uuid.uuid4()}"})

    assert ack.seq == 2 * last
    assert await read_models(client, system, products, orders, ack.seq) == before


async def test_redelivering_the_whole_stream_after_a_crash_changes_nothing(client, system, ops):
    products, orders, position = await history(client, system)
    before = await read_models(client, system, products, orders, position)
    last = (await ops.stream_info(EVENTS_STREAM)).state.last_seq

    for name in PROJECTORS:  # crash every projector, and forget its consumer and its checkpoint
        system.kill(f"projector-{name}")
        await ops.delete_consumer(EVENTS_STREAM, name)
    await forget_checkpoints(system)
    system.start()
    await system.caught_up(last)

    assert await read_models(client, system, products, orders, position) == before


async def forget_checkpoints(system) -> None:
    """Every projection starts again from the first event."""
    search = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
    index = projection_state_index(system.index_prefix)
    await search.indices.refresh(index=index)  # what the dead projectors wrote last
    await search.delete_by_query(index=index, body={"query": {"match_all": {}}}, refresh=True)
    await search.close()
    redis = Redis.from_url(REDIS_URL)
    async for key in redis.scan_iter(match=f"{system.env['ANALYTICS_PREFIX']}*checkpoint"):
        await redis.delete(key)
    await redis.aclose()
