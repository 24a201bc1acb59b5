"""The event store in PostgreSQL: events with a unique (stream_id, version), and an outbox row
per event written in the same transaction."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import NamedTuple

import asyncpg
import msgspec

from shop.contracts.events import Envelope
from shop.errors import ConcurrencyError, IdempotencyKeyReused, Unavailable

# a command's transaction runs at this level whatever the server's default: the streams' locks
# serialize writers, and each statement must see what the writer before it committed
ISOLATION = "read committed"

COLUMNS = (
    "event_id, stream_id, stream_type, version, type, schema_version, data, occurred_at, correlation_id, causation_id"
)


REMEMBER = "insert into idempotency_keys (user_id, key, request_hash, reply, position_of)"
ON_KEY_CONFLICT = """on conflict (user_id, key) do update set request_hash = excluded.request_hash,
    reply = excluded.reply, position_of = excluded.position_of, created_at = now()"""


SNAPSHOT_CONFLICT = """on conflict (stream_id) do update set version = excluded.version, schema = excluded.schema,
    state = excluded.state, taken_at = now() where snapshots.version < excluded.version"""


def save_snapshots(first: int) -> str:
    """Upsert snapshots given as five arrays, the query's parameters from number `first` on."""
    n = range(first, first + 5)
    return f"""insert into snapshots (stream_id, stream_type, version, schema, state)
        select * from unnest(${n[0]}::text[], ${n[1]}::text[], ${n[2]}::int[], ${n[3]}::int[], ${n[4]}::jsonb[])
        {SNAPSHOT_CONFLICT}"""


class Remembered(NamedTuple):
    """The reply to an Idempotency-Key, stored in the command's transaction."""

    user_id: str
    key: str
    request_hash: bytes
    reply: bytes


def envelope_from_row(row: asyncpg.Record) -> Envelope:
    return Envelope(
        event_id=str(row["event_id"]),
        type=row["type"],
        schema_version=row["schema_version"],
        stream_id=row["stream_id"],
        stream_type=row["stream_type"],
        version=row["version"],
        occurred_at=row["occurred_at"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        data=msgspec.Raw(row["data"].encode()),
    )


class Snapshot(NamedTuple):
    state: bytes  # JSON
    version: int
    schema: int
    trusted: bool  # its version is in its stream


class Session:
    """One transaction holding the locks of the streams it will write."""

    def __init__(self, conn: asyncpg.Connection, unlocked: Iterable[str] = ()) -> None:
        self._conn = conn
        self._unlocked = sorted(set(unlocked))  # streams to lock (sorted: never a deadlock) before any statement
        self._snapshots: dict[str, tuple[str, int, int, str]] = {}  # to save with the appended events

    def snapshot_later(self, stream_id: str, stream_type: str, version: int, schema: int, state: bytes) -> None:
        """Saved by the next `append`, in its statement (or at commit if nothing is appended)."""
        self._snapshots[stream_id] = (stream_type, version, schema, state.decode())

    async def _locked(self) -> asyncpg.Connection:
        """The connection, once the session's streams are locked (by its first statement)."""
        if self._unlocked:
            await self._conn.execute("select lock_streams($1::text[])", self._unlocked)
            self._unlocked = []
        return self._conn

    async def save_pending_snapshots(self) -> None:
        if self._snapshots:
            conn = await self._locked()
            await conn.execute(save_snapshots(1), *self._snapshot_columns())

    def _snapshot_columns(self) -> list[list]:
        rows = [(stream_id, *snapshot) for stream_id, snapshot in self._snapshots.items()]
        self._snapshots = {}
        return [list(column) for column in zip(*rows, strict=True)]

    async def load(self, stream_type: str, stream_id: str, after_version: int = 0) -> list[Envelope]:
        """The stream's events of this type (none for another type's id, which is then not found)."""
        conn = await self._locked()
        rows = await conn.fetch(
            f"""select {COLUMNS} from events where stream_id = $1 and stream_type = $2 and version > $3
                order by version""",
            stream_id,
            stream_type,
            after_version,
        )
        return [envelope_from_row(r) for r in rows]

    async def load_streams(
        self, stream_type: str, stream_ids: list[str], snapshot_schema: int | None
    ) -> dict[str, tuple[Snapshot | None, list[Envelope]]]:
        """In one round trip, which also takes the session's locks if no statement took them yet (the
        database function `load_streams`), each stream's snapshot (with `snapshot_schema`; None:
        snapshots unused) and its events after it; after version 0 when the snapshot has another
        schema or is not trusted (its version is not in its stream: a restore, a manual fix)."""
        rows = await self._conn.fetch(
            "select * from load_streams($1::text[], $2::text[], $3, $4::int)",
            self._unlocked,
            stream_ids,
            stream_type,
            snapshot_schema,
        )
        self._unlocked = []
        loaded: dict[str, tuple[Snapshot | None, list[Envelope]]] = {i: (None, []) for i in stream_ids}
        for row in rows:
            if row["is_snapshot"]:
                snapshot = Snapshot(row["data"].encode(), row["version"], row["schema_version"], row["trusted"])
                loaded[row["stream_id"]] = (snapshot, [])
            else:
                loaded[row["stream_id"]][1].append(envelope_from_row(row))
        return loaded

    async def last_position(self, stream_ids: list[str]) -> int | None:
        """The global position of the last event of these streams (None if they have none)."""
        conn = await self._locked()
        return await conn.fetchval(
            "select max(global_position) from events where stream_id = any($1::text[])", stream_ids
        )

    async def has_version(self, stream_id: str, version: int) -> bool:
        conn = await self._locked()
        return await conn.fetchval(
            "select exists(select from events where stream_id = $1 and version = $2)", stream_id, version
        )

    async def load_snapshot(self, stream_type: str, stream_id: str) -> tuple[bytes, int, int] | None:
        """(state as JSON, version, schema) of the stream's latest snapshot, if any."""
        conn = await self._locked()
        row = await conn.fetchrow(
            "select state::text, version, schema from snapshots where stream_id = $1 and stream_type = $2",
            stream_id,
            stream_type,
        )
        return (row["state"].encode(), row["version"], row["schema"]) if row else None

    async def save_snapshot(self, stream_id: str, stream_type: str, version: int, schema: int, state: bytes) -> None:
        conn = await self._locked()
        await conn.execute(
            f"insert into snapshots (stream_id, stream_type, version, schema, state) values ($1, $2, $3, $4, $5) "
            f"{SNAPSHOT_CONFLICT}",
            stream_id,
            stream_type,
            version,
            schema,
            state.decode(),
        )

    async def delete_snapshot(self, stream_id: str) -> None:
        conn = await self._locked()
        await conn.execute("delete from snapshots where stream_id = $1", stream_id)

    async def append(self, envelopes: Iterable[Envelope], remember: Remembered | None = None) -> list[int]:
        """Insert events and their outbox rows (and the reply to remember for an Idempotency-Key, whose
        position is of the last of them) in one statement; returns their global positions.
        A taken (stream_id, version) is a ConcurrencyError."""
        envelopes = list(envelopes)
        if not envelopes:
            return []
        records = [
            (
                e.event_id,
                e.stream_id,
                e.stream_type,
                e.version,
                e.type,
                e.schema_version,
                bytes(e.data).decode(),
                e.occurred_at,
                e.correlation_id,
                e.causation_id,
            )
            for e in envelopes
        ]
        remembering = (
            f""", remembered as ({REMEMBER} select $11::text, $12::text, $13::bytea, $14::bytea,
                                  max(global_position) from inserted {ON_KEY_CONFLICT})"""
            if remember
            else ""
        )
        snapshots = self._snapshot_columns() if self._snapshots else []
        if snapshots:
            remembering += f", saved as ({save_snapshots(15 if remember else 11)})"
        conn = await self._locked()
        try:
            positions = await conn.fetch(
                f"""with inserted as (
                        insert into events ({COLUMNS})
                        select * from unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
                                             $7::jsonb[], $8::timestamptz[], $9::text[], $10::text[])
                        returning global_position),
                    outboxed as (insert into outbox (global_position) select global_position from inserted)
                    {remembering}
                    select global_position from inserted order by global_position""",
                *map(list, zip(*records, strict=True)),
                *(remember or ()),
                *snapshots,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConcurrencyError(f"a stream was appended to concurrently: {exc.detail or exc}") from exc
        return [p["global_position"] for p in positions]

    async def remembered_reply(
        self, user_id: str, key: str, request_hash: bytes, ttl: float
    ) -> tuple[bytes, int | None] | None:
        """The reply stored for this key (unexpired) and the global position its position is of, None if
        the key is new (with the session's locks if no statement took them yet). The same key with
        another request is IdempotencyKeyReused."""
        row = await self._conn.fetchrow(
            "select * from remembered_reply($1::text[], $2, $3, $4)", self._unlocked, user_id, key, ttl
        )
        self._unlocked = []
        if row is None:
            return None
        if row["request_hash"] != request_hash:
            raise IdempotencyKeyReused(f"Idempotency-Key {key!r} was already used for a different request")
        return row["reply"], row["position_of"]

    async def remember_reply(
        self, user_id: str, key: str, request_hash: bytes, reply: bytes, position_of: int | None
    ) -> None:
        conn = await self._locked()
        await conn.execute(
            f"{REMEMBER} values ($1, $2, $3, $4, $5) {ON_KEY_CONFLICT}",
            user_id,
            key,
            request_hash,
            reply,
            position_of,
        )


def begin(timeout_ms: int | None) -> str:
    """Begin, and bound every wait, in one simple-protocol script."""
    script = f"begin isolation level {ISOLATION}"
    if timeout_ms is not None:
        script += f"; set local lock_timeout = {timeout_ms}; set local statement_timeout = {timeout_ms}"
    return script


class EventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def session(self, stream_ids: Iterable[str], commit_by: float | None = None) -> AsyncIterator[Session]:
        """A transaction that first takes a lock per stream (sorted, so never a deadlock), so writers of
        the same streams queue instead of failing; the unique (stream_id, version) stays the last guard.
        With `commit_by` (event-loop time) no wait outlasts it and nothing commits after it: past it
        the transaction is rolled back and the caller told, truthfully, that nothing was done."""
        loop = asyncio.get_running_loop()

        def seconds_left() -> float:
            left = float("inf") if commit_by is None else commit_by - loop.time()
            if left <= 0:
                raise Unavailable("the command's deadline passed before it could commit; nothing was done")
            return left

        try:
            async with self._pool.acquire(timeout=min(seconds_left(), 60.0)) as conn:
                timeout_ms = None if commit_by is None else max(1, int(seconds_left() * 1000))
                try:
                    await conn.execute(begin(timeout_ms))
                    session = Session(conn, stream_ids)  # its first statement takes the locks
                    yield session
                    await session.save_pending_snapshots()  # those no append took along
                    seconds_left()  # never commit past the deadline
                except BaseException:
                    if not conn.is_closed() and conn.is_in_transaction():
                        with contextlib.suppress(Exception):  # a broken connection is closed on release
                            await conn.execute("rollback")
                    raise
                await conn.execute("commit")
        except (asyncpg.exceptions.LockNotAvailableError, asyncpg.exceptions.QueryCanceledError, TimeoutError) as exc:
            raise Unavailable(f"the command's deadline passed while it waited; nothing was done ({exc})") from exc
        except (
            OSError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.CannotConnectNowError,
        ) as exc:
            raise Unavailable(f"PostgreSQL unavailable: {exc}") from exc

    async def forget_expired_replies(self, ttl: float) -> int:
        result = await self._pool.execute(
            "delete from idempotency_keys where created_at < now() - make_interval(secs => $1)", ttl
        )
        return int(result.split()[-1])

    async def ping(self) -> None:
        await self._pool.fetchval("select 1")
