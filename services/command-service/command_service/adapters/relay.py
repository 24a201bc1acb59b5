"""Outbox relay: publishes committed events to JetStream in commit order, then deletes their
outbox rows. A crash in between re-publishes on restart; `Nats-Msg-Id` = event_id makes that safe."""

import asyncio

import asyncpg
import msgspec
import structlog
from nats.js import JetStreamContext

from command_service.adapters.event_store import COLUMNS, envelope_from_row
from shop.messaging import DUPLICATE_WINDOW
from shop.metrics import EVENTS_PUBLISHED, OUTBOX_OLDEST_AGE

log = structlog.get_logger()

RELAY_LOCK = 7_100_002  # one publisher at a time across replicas keeps commit order
BATCH = 500
# a row older than this may be re-published after JetStream forgot its id, i.e. duplicated
OUTBOX_AGE_ALERT = DUPLICATE_WINDOW / 2


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, interval: float) -> None:
        self._pool, self._js, self._interval = pool, js, interval
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._wake = asyncio.Event()
        self._backoff_until = 0.0  # while failing, commands do not wake the relay before this time
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

    def expect(self, positions: list[int]) -> None:
        """Call with the global positions of new events before their transaction commits: a flush that
        runs between the commit and `published()` then still records their sequence numbers."""
        loop = asyncio.get_running_loop()
        for position in positions:
            self._waiting.setdefault(position, loop.create_future())

    def forget(self, positions: list[int]) -> None:
        for position in positions:
            self._waiting.pop(position, None)

    async def published(self, position: int, timeout: float) -> int | None:
        """The JetStream sequence of the event at this global position once published, None if not in
        time. Published here (and `expect`ed), it is known at once; published earlier or by another
        replica's relay, it is read from the events table, where every relay records it."""
        future = self._waiting.get(position)
        loop = asyncio.get_running_loop()
        if loop.time() >= self._backoff_until:
            self._wake.set()
        deadline = loop.time() + timeout
        while True:
            if future is not None:
                await asyncio.wait([future], timeout=max(0.0, min(0.1, deadline - loop.time())))
                if future.done():
                    return future.result()
            recorded = await self._pool.fetchval("select stream_seq from events where global_position = $1", position)
            if recorded is not None or loop.time() >= deadline:
                return recorded
            if future is None:
                await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    async def check_outbox_age(self) -> float:
        """Seconds the oldest unpublished event has waited (also the metric); raises past the alert age."""
        age = await self._pool.fetchval(
            "select coalesce(extract(epoch from now() - min(created_at)), 0)::float8 from outbox"
        )
        OUTBOX_OLDEST_AGE.set(age)
        if age > OUTBOX_AGE_ALERT:
            raise RuntimeError(
                f"the oldest outbox row waits for {age:.0f}s; past {DUPLICATE_WINDOW}s its re-publish may duplicate"
            )
        return age

    async def _run(self) -> None:
        delay = self._interval
        loop = asyncio.get_running_loop()
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
                self._backoff_until = loop.time() + delay
                self._wake.clear()  # a command's earlier nudge does not cut the backoff short
                log.warning("relay_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            try:
                await self.check_outbox_age()
            except Exception as exc:
                log.error("outbox_too_old", error=str(exc))
        await self.flush()

    async def flush(self) -> int:
        """Publish one batch of outbox rows in commit order; returns how many were published. When a
        publish fails, what was acknowledged before it is still recorded (and committed), so it is not
        published again; then the failure is raised."""
        async with self._lock, self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("select pg_try_advisory_xact_lock($1)", RELAY_LOCK):
                return 0
            rows = await conn.fetch(
                f"""select o.global_position, {COLUMNS} from outbox o join events e using (global_position)
                    order by o.global_position limit {BATCH}"""
            )
            positions, sequences, failure = [], [], None
            for row in rows:
                envelope = envelope_from_row(row)
                try:
                    ack = await self._js.publish(
                        envelope.subject, msgspec.json.encode(envelope), headers={"Nats-Msg-Id": envelope.event_id}
                    )
                except Exception as exc:
                    failure = exc
                    break
                EVENTS_PUBLISHED.inc()
                positions.append(row["global_position"])
                sequences.append(ack.seq)
            await self._record(conn, positions, sequences)
        if failure is not None:
            raise failure
        return len(positions)

    async def _record(self, conn: asyncpg.Connection, positions: list[int], sequences: list[int]) -> None:
        if not positions:
            return
        await conn.execute(
            """update events set stream_seq = p.seq
               from unnest($1::bigint[], $2::bigint[]) as p(global_position, seq)
               where events.global_position = p.global_position""",
            positions,
            sequences,
        )
        await conn.execute("delete from outbox where global_position = any($1::bigint[])", positions)
        for position, sequence in zip(positions, sequences, strict=True):
            future = self._waiting.get(position)
            if future is not None and not future.done():
                future.set_result(sequence)
