"""PostgreSQL for the command-service: its connection pool and its schema (events, outbox,
snapshots, idempotency keys), migrated at start."""

import asyncpg

from shop.errors import Unavailable

SCHEMA = """
create table if not exists events (
    global_position bigint generated always as identity primary key,
    event_id uuid not null unique,
    stream_id text not null,
    stream_type text not null,
    version integer not null check (version > 0),
    type text not null,
    schema_version integer not null default 1,
    data jsonb not null,
    occurred_at timestamptz not null,
    correlation_id text,
    causation_id text,
    constraint events_stream_version unique (stream_id, version)
);
alter table events add column if not exists stream_seq bigint;  -- its JetStream sequence, once published
create table if not exists outbox (
    global_position bigint primary key references events (global_position)
);
alter table outbox add column if not exists created_at timestamptz not null default now();
create table if not exists snapshots (
    stream_id text primary key,
    stream_type text not null,
    version integer not null,
    schema integer not null,
    state jsonb not null,
    taken_at timestamptz not null default now()
);
create table if not exists idempotency_keys (
    user_id text not null,
    key text not null,
    request_hash bytea not null,
    reply bytea not null,
    created_at timestamptz not null default now(),
    primary key (user_id, key)
);
-- the reply's position is the JetStream sequence of this event, looked up whenever the reply is sent
alter table idempotency_keys add column if not exists position_of bigint;
create index if not exists idempotency_keys_created_at on idempotency_keys (created_at);
"""
MIGRATION_LOCK = 7_100_001


async def keep_session(connection: asyncpg.Connection) -> None:
    """A connection's reset on release: none beyond the rollback of a transaction left open, which
    asyncpg does anyway. The default (unlock all, close all, unlisten, reset all) is a round trip a
    command, and nothing here outlives its transaction: advisory locks are transaction-level,
    settings `set local`, and LISTEN has a connection of its own."""


async def create_pool(url: str, size: int) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(url, min_size=1, max_size=size, command_timeout=30, reset=keep_session)
    except (OSError, asyncpg.PostgresError) as exc:
        raise Unavailable(f"PostgreSQL unreachable: {exc}") from exc


async def migrate(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(SCHEMA)
