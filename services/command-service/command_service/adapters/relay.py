"""Outbox relay: publishes committed events to JetStream in commit order, then deletes their
outbox rows. A crash in between re-publishes on restart; `Nats-Msg-Id` = event_id makes that safe."""

import asyncio

import asyncpg
import msgspec
import structlog
from nats.js import JetStreamContext

from command_service.adapters.event_store import COLUMNS, envelope_from_row
from shop.metrics import EVENTS_PUBLISHED

log = structlog.get_logger()

RELAY_LOCK = 7_100_002  # one publisher at a time across replicas keeps commit order
BATCH = 500


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, interval: float) -> None:
        self._pool, self._js, self._interval = pool, js, interval
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def expect(self, event_ids: list[str]) -> None:
        """Call before the events' transaction commits: a flush that runs between the commit and
        `published()` then still records their sequence numbers."""
        loop = asyncio.get_running_loop()
        for event_id in event_ids:
            self._waiting.setdefault(event_id, loop.create_future())

    def forget(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            self._waiting.pop(event_id, None)

    async def published(self, event_ids: list[str], timeout: float) -> int | None:
        """The JetStream sequence of the last of these `expect`ed events once published, None if not in
        time. Published here, it is known at once; published by another replica's relay, it is read
        from the events table, where every relay records it."""
        futures = [self._waiting[e] for e in event_ids]
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await asyncio.wait(futures, timeout=max(0.0, min(0.1, deadline - loop.time())))
            if all(f.done() for f in futures):
                return max(f.result() for f in futures)
            recorded = await self._pool.fetchval(
                "select max(stream_seq) from events where event_id = any($1::uuid[]) having count(stream_seq) = $2",
                event_ids,
                len(event_ids),
            )
            if recorded is not None or loop.time() >= deadline:
                return recorded

    async def _run(self) -> None:
        delay = self._interval
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.flush() == BATCH:
                    pass
                delay = self._interval
            except Exception as exc:  # NATS or PostgreSQL away: keep the rows, retry with backoff
                delay = min(max(delay * 2, self._interval), 10.0)
                log.warning("relay_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
        await self.flush()

    async def flush(self) -> int:
        """Publish one batch of outbox rows in commit order; returns how many were published."""
        async with self._lock, self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("select pg_try_advisory_xact_lock($1)", RELAY_LOCK):
                return 0
            rows = await conn.fetch(
                f"""select o.global_position, {COLUMNS} from outbox o join events e using (global_position)
                    order by o.global_position limit {BATCH}"""
            )
            sequences = []
            for row in rows:
                envelope = envelope_from_row(row)
                ack = await self._js.publish(
                    envelope.subject, msgspec.json.encode(envelope), headers={"Nats-Msg-Id": envelope.event_id}
                )
                EVENTS_PUBLISHED.inc()
                sequences.append(ack.seq)
                future = self._waiting.get(envelope.event_id)
                if future is not None and not future.done():
                    future.set_result(ack.seq)
            if rows:
                positions = [r["global_position"] for r in rows]
                await conn.execute(
                    """update events set stream_seq = p.seq
                       from unnest($1::bigint[], $2::bigint[]) as p(global_position, seq)
                       where events.global_position = p.global_position""",
                    positions,
                    sequences,
                )
                await conn.execute("delete from outbox where global_position = any($1::bigint[])", positions)
            return len(rows)
