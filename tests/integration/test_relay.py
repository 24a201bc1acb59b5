"""The outbox relay under partial failure: what was acknowledged stays recorded, a failing stream
is retried with backoff that commands cannot cut short, and an old outbox row raises an alert."""

import asyncio

import pytest

from command_service.adapters.event_store import EventStore
from command_service.adapters.relay import OutboxRelay
from shop.contracts.events import ProductRestocked
from shop.metrics import OUTBOX_OLDEST_AGE
from tests.envelopes import envelope


class FailingJetStream:
    """Publishes through the real JetStream until `fail_after` publishes, then raises."""

    def __init__(self, js, fail_after: int) -> None:
        self._js, self.fail_after, self.attempts = js, fail_after, 0

    async def publish(self, *args, **kwargs):
        self.attempts += 1
        if self.attempts > self.fail_after:
            raise ConnectionError("stream away")
        return await self._js.publish(*args, **kwargs)


async def append_restocks(pool, stream_id: str, count: int) -> list[int]:
    async with EventStore(pool).session([stream_id]) as session:
        return await session.append([envelope(stream_id, v, ProductRestocked(quantity=1)) for v in range(1, count + 1)])


async def test_a_batch_failing_halfway_keeps_what_was_acknowledged(pool, js):
    await append_restocks(pool, "p-half", 5)
    relay = OutboxRelay(pool, FailingJetStream(js, fail_after=2), interval=3600)

    with pytest.raises(ConnectionError):
        await relay.flush()

    published = await pool.fetch("select version, stream_seq from events order by version")
    assert [r["stream_seq"] is not None for r in published] == [True, True, False, False, False]
    assert await pool.fetchval("select count(*) from outbox") == 3


async def test_commands_do_not_wake_a_failing_relay_before_its_backoff(pool, js):
    [position] = await append_restocks(pool, "p-away", 1)
    away = FailingJetStream(js, fail_after=0)
    relay = OutboxRelay(pool, away, interval=0.05)
    relay.start()
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + 2.0
        while loop.time() < until:  # commands keep asking for their position while the stream is away
            assert await relay.published(position, 0.02) is None
    finally:
        relay._js = js  # back again: stop() publishes what is left
        await relay.stop()

    # backoff 0.1, 0.2, 0.4, 0.8 s ... allows about five attempts in two seconds, not a hundred
    assert away.attempts <= 7


async def test_an_outbox_row_older_than_half_the_duplicate_window_raises_the_alert(pool, js):
    relay = OutboxRelay(pool, js, interval=3600)
    await append_restocks(pool, "p-old", 1)
    assert await relay.check_outbox_age() < 60
    await pool.execute("update outbox set created_at = now() - interval '400 seconds'")

    with pytest.raises(RuntimeError, match="outbox"):
        await relay.check_outbox_age()
    assert OUTBOX_OLDEST_AGE._value.get() >= 400
