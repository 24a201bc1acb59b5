"""The outbox relay under partial failure: what was acknowledged stays recorded, a failing stream
is retried with backoff that commands cannot cut short, and an old outbox row raises an alert."""

import asyncio
import shutil
import subprocess
import time

import msgspec
import pytest

from command_service.adapters import relay as relay_module
from command_service.adapters.event_store import COLUMNS, EventStore, envelope_from_row
from command_service.adapters.relay import OutboxRelay, Publisher
from shop import messaging
from shop.contracts.events import ProductRestocked
from shop.metrics import OUTBOX_OLDEST_AGE
from tests.conftest import free_port, wait_for_port
from tests.envelopes import envelope


class FailingPublisher:
    """Publishes through the real JetStream until `fail_after` publishes, then raises."""

    def __init__(self, publisher, fail_after: int) -> None:
        self._publisher, self.fail_after, self.attempts = publisher, fail_after, 0

    async def last_sequence(self) -> int:
        return await self._publisher.last_sequence()

    async def publish_async(self, *args, **kwargs):
        self.attempts += 1
        if self.attempts > self.fail_after:
            raise ConnectionError("stream away")
        return await self._publisher.publish_async(*args, **kwargs)


class LosingPublisher:
    """Real JetStream, except that the `lose`-th message is lost on its way (its ack never comes)."""

    def __init__(self, publisher, lose: int) -> None:
        self._publisher, self.lose, self.attempts = publisher, lose, 0

    async def last_sequence(self) -> int:
        return await self._publisher.last_sequence()

    async def publish_async(self, *args, **kwargs):
        self.attempts += 1
        if self.attempts == self.lose:
            return asyncio.get_running_loop().create_future()
        return await self._publisher.publish_async(*args, **kwargs)


async def assert_stored_once_each_in_commit_order(pool, stored: list) -> None:
    committed = await pool.fetch("select event_id::text, stream_seq from events order by global_position")
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [r["event_id"] for r in committed]  # once each, in order
    assert [m.seq for m in stored] == [r["stream_seq"] for r in committed]


async def stored_messages(js) -> list:
    last = (await js.stream_info(messaging.EVENTS_STREAM)).state.last_seq
    return [await js.get_msg(messaging.EVENTS_STREAM, seq) for seq in range(1, last + 1)]


class RestartableNats:
    """A NATS server with JetStream on a fixed port and store, which the test can kill and start again."""

    def __init__(self, store) -> None:
        self.port, self.store, self.process = free_port(), store, None
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [shutil.which("nats-server") or "nats-server", "-a", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "-js", "-sd", str(self.store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, time.monotonic() + 20)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


async def append_restocks(pool, stream_id: str, count: int) -> list[int]:
    async with EventStore(pool).session([stream_id]) as session:
        return await session.append([envelope(stream_id, v, ProductRestocked(quantity=1)) for v in range(1, count + 1)])


async def test_a_batch_failing_halfway_keeps_what_was_acknowledged(pool, tmp_path):
    server = RestartableNats(tmp_path)  # its own stream: nothing else publishes there
    server.start()
    nc = await messaging.connect(server.url, "test-relay")
    await messaging.ensure_streams(nc)
    await append_restocks(pool, "p-half", 5)
    relay = OutboxRelay(pool, FailingPublisher(Publisher(nc), fail_after=2), interval=3600)

    try:
        with pytest.raises(ConnectionError):
            await relay.flush()
    finally:
        await nc.close()
        server.kill()

    published = await pool.fetch("select version, stream_seq from events order by version")
    assert [r["stream_seq"] is not None for r in published] == [True, True, False, False, False]
    assert await pool.fetchval("select count(*) from outbox") == 3


async def test_a_message_lost_mid_batch_is_published_again_before_the_ones_after_it(pool, tmp_path, monkeypatch):
    monkeypatch.setattr(relay_module, "ACK_TIMEOUT", 0.5)
    server = RestartableNats(tmp_path)  # its own stream: nothing else publishes there
    server.start()
    nc = await messaging.connect(server.url, "test-relay")
    await messaging.ensure_streams(nc)
    js = nc.jetstream()
    await append_restocks(pool, "p-lost", 20)
    relay = OutboxRelay(pool, LosingPublisher(Publisher(nc), lose=5), interval=0.05)
    relay.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while await pool.fetchval("select count(*) from outbox"):
            assert asyncio.get_running_loop().time() < deadline, "the outbox never drained"
            await asyncio.sleep(0.05)
    finally:
        await relay.stop()
    stored = await stored_messages(js)
    await nc.close()
    server.kill()

    await assert_stored_once_each_in_commit_order(pool, stored)


async def test_commands_do_not_wake_a_failing_relay_before_its_backoff(pool, publisher):
    [position] = await append_restocks(pool, "p-away", 1)
    away = FailingPublisher(publisher, fail_after=0)
    relay = OutboxRelay(pool, away, interval=0.05)
    relay.start()
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + 2.0
        while loop.time() < until:  # commands keep asking for their position while the stream is away
            assert await relay.published(position, 0.02) is None
    finally:
        relay._publisher = publisher  # back again: stop() publishes what is left
        await relay.stop()

    # backoff 0.1, 0.2, 0.4, 0.8 s ... allows about five attempts in two seconds, not a hundred
    assert away.attempts <= 7


async def test_an_outbox_row_older_than_half_the_duplicate_window_raises_the_alert(pool, publisher):
    relay = OutboxRelay(pool, publisher, interval=3600)
    await append_restocks(pool, "p-old", 1)
    assert await relay.check_outbox_age() < 60
    await pool.execute("update outbox set created_at = now() - interval '400 seconds'")

    with pytest.raises(RuntimeError, match="outbox"):
        await relay.check_outbox_age()
    assert OUTBOX_OLDEST_AGE._value.get() >= 400


async def test_a_nats_killed_mid_batch_loses_reorders_and_duplicates_nothing(pool, tmp_path):
    server = RestartableNats(tmp_path)
    server.start()
    nc = await messaging.connect(server.url, "test-relay", deadline=20)
    await messaging.ensure_streams(nc)
    streams = [f"p-{n}" for n in range(10)]
    async with EventStore(pool).session(streams) as session:  # 10 streams of 60 events, interleaved
        for version in range(1, 61):
            await session.append([envelope(s, version, ProductRestocked(quantity=1)) for s in streams])
    relay = OutboxRelay(pool, Publisher(nc), interval=0.05)
    relay.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        js = nc.jetstream()
        while (await js.stream_info(messaging.EVENTS_STREAM)).state.last_seq < 100:
            assert loop.time() < deadline, "the relay published nothing"
        server.kill()  # mostly mid-batch: messages and acks in flight are lost
        server.start()
        deadline = loop.time() + 60
        while await pool.fetchval("select count(*) from outbox"):
            assert loop.time() < deadline, "the outbox never drained after the restart"
            await asyncio.sleep(0.05)
    finally:
        await relay.stop()
        stored = await stored_messages(nc.jetstream())
        await nc.close()
        server.kill()

    await assert_stored_once_each_in_commit_order(pool, stored)


async def test_events_published_before_a_crash_keep_their_sequences_and_the_rest_follow(pool, tmp_path):
    """A relay died after JetStream acknowledged its first three events, before it recorded them: the next
    flushes have the three acknowledged as the duplicates they are, at their first sequences, before the
    others."""
    server = RestartableNats(tmp_path)  # its own stream: nothing else publishes there
    server.start()
    nc = await messaging.connect(server.url, "test-relay")
    await messaging.ensure_streams(nc)
    await append_restocks(pool, "p-crash", 6)
    rows = await pool.fetch(f"select {COLUMNS} from events e order by global_position limit 3")
    js = nc.jetstream()
    for envelope_ in map(envelope_from_row, rows):
        await js.publish(envelope_.subject, msgspec.json.encode(envelope_), headers={"Nats-Msg-Id": envelope_.event_id})
    relay = OutboxRelay(pool, Publisher(nc), interval=3600)
    try:
        flushed = [await relay.flush() for _ in range(6)]
        assert sum(flushed) == 6 and flushed[-1] == 0
        stored = await stored_messages(js)
    finally:
        await nc.close()
        server.kill()

    await assert_stored_once_each_in_commit_order(pool, stored)


async def test_a_transaction_that_commits_late_does_not_reorder_the_streams_after_it(pool, tmp_path):
    """A transaction takes its position, then commits after a later one: its event is published after the
    later one's, so the newest recorded position is no longer the stream's last message. The next batch
    must still be stored in position order: each stream's versions in the order of their sequences."""
    server = RestartableNats(tmp_path)  # its own stream: nothing else publishes there
    server.start()
    nc = await messaging.connect(server.url, "test-relay")
    await messaging.ensure_streams(nc)
    js = nc.jetstream()
    relay = OutboxRelay(pool, Publisher(nc), interval=3600)
    late = EventStore(pool).session(["p-late"])
    try:
        session = await late.__aenter__()
        await session.append([envelope("p-late", 1, ProductRestocked(quantity=1))])  # its position taken
        await append_restocks(pool, "p-early", 1)  # a later position, committed first
        assert await relay.flush() == 1
        await late.__aexit__(None, None, None)  # commits now
        assert await relay.flush() == 1  # published after the later position
        await append_restocks(pool, "p-next", 3)  # one stream, three versions, in one transaction
        while await relay.flush():
            pass
        stored = await stored_messages(js)
    finally:
        await nc.close()
        server.kill()

    versions: dict[str, list[int]] = {}
    for message in stored:
        event = msgspec.json.decode(message.data)
        versions.setdefault(event["stream_id"], []).append(event["version"])
    assert versions == {"p-early": [1], "p-late": [1], "p-next": [1, 2, 3]}
    assert await pool.fetchval("select count(*) from outbox") == 0
