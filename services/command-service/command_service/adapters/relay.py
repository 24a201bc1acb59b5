"""Outbox relay: publishes committed events to JetStream in commit order, then deletes their
outbox rows. A crash in between re-publishes on restart; `Nats-Msg-Id` = event_id makes that safe.

A batch goes out with its acks in flight together. Each message carries `Nats-Expected-Last-Sequence`:
the stream's last sequence (asked of JetStream as the batch starts, while this relay alone publishes)
plus its place in the batch, so JetStream stores it only right after the one before it: if a message
is lost (a NATS restart mid-batch, a new stream leader) or refused, the ones after it are refused
rather than stored out of order, and the next flush starts again at it. (Not the sequence of the last
recorded event: events of transactions that commit late are published after later positions, so the
newest position recorded is not always the stream's last, and a batch expecting too low a sequence
would have its first messages refused and the next ones stored before them. Not
`Nats-Expected-Last-Msg-Id`: a cluster node that restarted checks that one against a last id it no
longer knows, and stops copying the stream.) A message published before a crash, before its sequence
was recorded, is acknowledged as the duplicate it is, at its first sequence; the ones after it wait for
the next flush (or, when the batch's first one is refused, go one at a time without the header)."""

import asyncio
import contextlib
import itertools
import uuid

import asyncpg
import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

from command_service.adapters.event_store import COLUMNS, envelope_from_row
from shop.messaging import DUPLICATE_WINDOW, EVENTS_STREAM
from shop.metrics import EVENTS_PUBLISHED, OUTBOX_OLDEST_AGE

log = structlog.get_logger()

RELAY_LOCK = 7_100_002  # one publisher at a time across replicas keeps commit order
BATCH = 500
ACK_TIMEOUT = 5.0  # seconds a batch waits for its acks
WRONG_LAST_SEQUENCE = 10071  # JetStream refused a message: the stream's last one is not the one it expected
PUBLISHED_CHANNEL = "outbox_published"  # NOTIFY after a relay committed a batch's sequences
RECHECK = 1.0  # seconds between looks at the events table while no notification says anything
AGE_CHECK_EVERY = 1.0  # seconds between two checks of the outbox's oldest row
# a row older than this may be re-published after JetStream forgot its id, i.e. duplicated
OUTBOX_AGE_ALERT = DUPLICATE_WINDOW / 2


class Publisher:
    """JetStream publishes with their acks in flight, like nats-py's `publish_async`, whose future never
    completes when JetStream refuses the message (its `APIError.from_error` raises instead of returning):
    here it fails with the refusal, so a refused message is told from a lost one at once."""

    def __init__(self, nc: NATS) -> None:
        self._nc, self._inbox = nc, nc.new_inbox()
        self._acks: dict[str, asyncio.Future[PubAck]] = {}
        self._ids = itertools.count()
        self._subscribed = False

    async def last_sequence(self) -> int:
        """The EVENTS stream's last sequence."""
        return (await self._nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq

    async def publish_async(self, subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future[PubAck]:
        if not self._subscribed:
            await self._nc.subscribe(f"{self._inbox}.*", cb=self._acked)
            self._subscribed = True
        reply = f"{self._inbox}.{next(self._ids)}"
        ack = self._acks[reply] = asyncio.get_running_loop().create_future()
        ack.add_done_callback(lambda _: self._acks.pop(reply, None))  # also when the relay gives up on it
        await self._nc.publish(subject, payload, reply=reply, headers=headers)
        return ack

    async def _acked(self, msg: Msg) -> None:
        ack = self._acks.get(msg.subject)  # (its done callback forgets it)
        if ack is None or ack.done():
            return
        if not msg.data:  # a status without a body: no stream took it
            ack.set_exception(NoStreamResponseError())
            return
        answer = msgspec.json.decode(msg.data)
        if "error" in answer:
            error = answer["error"]
            ack.set_exception(APIError(error.get("code"), error.get("description"), error.get("err_code")))
        else:
            ack.set_result(PubAck.from_response(answer))


class OutboxRelay:
    def __init__(
        self, pool: asyncpg.Pool, publisher: Publisher, interval: float, listen_url: str | None = None
    ) -> None:
        """With `listen_url` a connection of its own LISTENs for other replicas' relays, so a command
        waiting for its events learns at once that another replica published them."""
        self._pool, self._publisher, self._interval, self._listen_url = pool, publisher, interval, listen_url
        self._waiting: dict[int, asyncio.Future[int]] = {}
        self._wake = asyncio.Event()
        self._backoff_until = 0.0  # while failing, commands do not wake the relay before this time
        self._lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task | None = None
        self._listener: asyncpg.Connection | None = None
        self._lookups: set[asyncio.Task] = set()
        self._id = uuid.uuid4().hex  # the payload of this relay's notifications, which it ignores

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._listener is not None:
            await self._listener.close()

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
        time. Published by this relay it is known at once; published earlier or by another replica's
        relay, it is read from the events table, where every relay records it (on its notification,
        and every RECHECK seconds)."""
        loop = asyncio.get_running_loop()
        future = self._waiting.get(position)
        ours = future is None
        if ours:
            future = self._waiting[position] = loop.create_future()
        if loop.time() >= self._backoff_until:
            self._wake.set()
        deadline = loop.time() + timeout
        try:
            if ours and (recorded := await self._recorded(position)) is not None:
                return recorded
            while True:
                await asyncio.wait([future], timeout=max(0.0, min(RECHECK, deadline - loop.time())))
                if future.done():
                    return future.result()
                recorded = await self._recorded(position)
                if recorded is not None or loop.time() >= deadline:
                    return recorded
        finally:
            if ours:
                self._waiting.pop(position, None)

    async def _recorded(self, position: int) -> int | None:
        return await self._pool.fetchval("select stream_seq from events where global_position = $1", position)

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
        age_checked = 0.0
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass
            self._wake.clear()
            await self._keep_listening()
            try:
                while await self.flush() == BATCH:
                    pass
                delay = self._interval
            except Exception as exc:  # NATS or PostgreSQL away: keep the rows, retry with backoff
                delay = min(max(delay * 2, self._interval), 10.0)
                self._backoff_until = loop.time() + delay
                self._wake.clear()  # a command's earlier nudge does not cut the backoff short
                log.warning("relay_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            if loop.time() - age_checked >= AGE_CHECK_EVERY:  # not once a batch: that is a query a command
                age_checked = loop.time()
                try:
                    await self.check_outbox_age()
                except Exception as exc:
                    log.error("outbox_too_old", error=str(exc))
        await self.flush()

    async def _keep_listening(self) -> None:
        if self._listen_url is None or (self._listener is not None and not self._listener.is_closed()):
            return
        try:
            self._listener = await asyncpg.connect(self._listen_url)
            await self._listener.add_listener(PUBLISHED_CHANNEL, self._on_published)
        except (OSError, asyncpg.PostgresError) as exc:
            self._listener = None
            log.warning("relay_listen_failed", error=f"{type(exc).__name__}: {exc}")
            return
        self._on_published()  # what was published while nobody listened

    def _on_published(self, *notification: object) -> None:
        if notification and notification[-1] == self._id:
            return  # its own batch: what it published is already resolved
        if any(not f.done() for f in self._waiting.values()):
            lookup = asyncio.get_running_loop().create_task(self._resolve_recorded())
            self._lookups.add(lookup)
            lookup.add_done_callback(self._lookups.discard)

    async def _resolve_recorded(self) -> None:
        """Another replica's relay committed a batch: the waiting events it published learn their sequence."""
        positions = [p for p, f in self._waiting.items() if not f.done()]
        with contextlib.suppress(Exception):  # a missed look is made up by `published`'s recheck
            rows = await self._pool.fetch(
                """select global_position, stream_seq from events
                   where global_position = any($1::bigint[]) and stream_seq is not null""",
                positions,
            )
            self._resolve([r["global_position"] for r in rows], [r["stream_seq"] for r in rows])

    def _resolve(self, positions: list[int], sequences: list[int]) -> None:
        for position, sequence in zip(positions, sequences, strict=True):
            future = self._waiting.get(position)
            if future is not None and not future.done():
                future.set_result(sequence)

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
            if not rows:
                return 0
            last = await self._publisher.last_sequence()  # no other relay publishes while this one holds the lock
            positions, sequences, failure = await self._publish(rows, last)
            if not positions and wrong_last_sequence(failure):
                positions, sequences, failure = await self._publish(rows, None)
            await self._record(conn, positions, sequences)
        if wrong_last_sequence(failure) and positions:
            self._wake.set()  # a message was lost on the way (NATS restarted, a new leader): go on from there
        elif failure is not None:
            raise failure
        return len(positions)

    async def _publish(
        self, rows: list[asyncpg.Record], last: int | None
    ) -> tuple[list[int], list[int], Exception | None]:
        """Publishes the rows with their acks in flight together, each expecting `last` + its place as the
        stream's last sequence (`last` None: one at a time, each after the one before is acknowledged);
        returns the global positions and stream sequences of the leading rows acknowledged, and the failure
        that ended them (None if none did)."""
        acks: list[asyncio.Future] = []
        failure: Exception | None = None
        for place, row in enumerate(rows):
            envelope = envelope_from_row(row)
            headers = {"Nats-Msg-Id": envelope.event_id}
            if last is not None:
                headers["Nats-Expected-Last-Sequence"] = str(last + place)
            try:
                acks.append(
                    await self._publisher.publish_async(
                        envelope.subject, msgspec.json.encode(envelope), headers=headers
                    )
                )
                if last is None:
                    await asyncio.wait(acks[-1:], timeout=ACK_TIMEOUT)
                    if not acks[-1].done() or acks[-1].exception() is not None:
                        break
            except Exception as exc:
                failure = exc
                break
        if acks:
            await asyncio.wait(acks, timeout=ACK_TIMEOUT)
        positions, sequences = [], []
        for row, ack in zip(rows, acks, strict=False):
            if not ack.done() or ack.cancelled():
                failure = TimeoutError(f"no ack from JetStream within {ACK_TIMEOUT}s")
            elif ack.exception() is not None:
                failure = ack.exception()
            else:
                positions.append(row["global_position"])
                sequences.append(ack.result().seq)
                continue
            break
        for ack in acks:
            ack.cancel()  # those still waiting: the client forgets them
        EVENTS_PUBLISHED.inc(len(positions))
        return positions, sequences, failure

    async def _record(self, conn: asyncpg.Connection, positions: list[int], sequences: list[int]) -> None:
        """The batch's sequences and the removal of its outbox rows in one statement; other replicas are told."""
        if not positions:
            return
        await conn.execute(
            f"""with published as (select * from unnest($1::bigint[], $2::bigint[]) as p(global_position, seq)),
                recorded as (update events set stream_seq = p.seq from published p
                             where events.global_position = p.global_position)
                delete from outbox where global_position in (select global_position from published)
                returning pg_notify('{PUBLISHED_CHANNEL}', $3)""",
            positions,
            sequences,
            self._id,
        )
        self._resolve(positions, sequences)


def wrong_last_sequence(failure: Exception | None) -> bool:
    return isinstance(failure, APIError) and failure.err_code == WRONG_LAST_SEQUENCE
