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
-- a command's first statement locks its streams, then reads (its remembered reply, its aggregates).
-- In a function, as the read must come after the locks: each statement of a function sees what was
-- committed before it starts, so the read sees what the locks' previous holders committed (a single
-- statement could not: its snapshot would be taken before it waited for the locks)
create or replace function lock_streams(locks text[]) returns void language plpgsql volatile as $$
declare
    lock text;
begin
    foreach lock in array locks loop  -- in the caller's (sorted) order: never a deadlock
        perform pg_advisory_xact_lock(hashtextextended(lock, 0));
    end loop;
end $$;
create or replace function remembered_reply(locks text[], wanted_user text, wanted_key text, ttl float8)
returns table (request_hash bytea, reply bytea, position_of bigint)
language plpgsql volatile as $$
begin
    perform lock_streams(locks);
    return query select k.request_hash, k.reply, k.position_of from idempotency_keys k
        where k.user_id = wanted_user and k.key = wanted_key and k.created_at > now() - make_interval(secs => ttl);
end $$;
create or replace function load_streams(locks text[], ids text[], wanted_type text, snapshot_schema int)
returns table (is_snapshot boolean, trusted boolean, event_id uuid, stream_id text, stream_type text,
               version int, type text, schema_version int, data jsonb, occurred_at timestamptz,
               correlation_id text, causation_id text)
language plpgsql volatile as $$
#variable_conflict use_column
begin
    perform lock_streams(locks);
    return query
    with snapshot as (
        select s.stream_id, s.stream_type, s.version, s.schema, s.state,
               exists(select from events e where e.stream_id = s.stream_id and e.version = s.version) as trusted
        from snapshots s
        where snapshot_schema is not null and s.stream_id = any(ids) and s.stream_type = wanted_type)
    select true, s.trusted, null::uuid, s.stream_id, s.stream_type, s.version, null::text, s.schema, s.state,
           null::timestamptz, null::text, null::text
    from snapshot s
    union all
    select false, null::boolean, e.event_id, e.stream_id, e.stream_type, e.version, e.type, e.schema_version,
           e.data, e.occurred_at, e.correlation_id, e.causation_id
    from events e
    where e.stream_id = any(ids) and e.stream_type = wanted_type and e.version > coalesce(
        (select s.version from snapshot s where s.stream_id = e.stream_id and s.trusted
         and s.schema = snapshot_schema), 0)
    order by 1 desc, 4, 6;
end $$;
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
