"""Raw ceilings: what the same machine does with the same clients and the same bytes when our
code is left out. Each probe is measured in the same run as the figure it stands beside.

- `raw_pipeline` (beside PlaceOrder): per command, one asyncpg transaction inserting the same
  event rows (the last OrderPlaced and ProductStockDecreased of EVENTS, with fresh ids) and their
  outbox rows with the event store's own statements into copies of its tables (`create table ...
  (like public.events including all)`), then a JetStream publish of each event's envelope (same
  size) with `Nats-Msg-Id`, awaiting the ack; as many commands in flight as wrk has connections,
  through a pool as large as the command-service's. No locks, no aggregate loading, no relay.
- `bare_consumer` (beside every rebuild): the least a consumer must do to read the stream: a pull
  consumer on EVENTS from the start with no acks, read the way the projectors read it
  (`shop.projection.pull`: 1,000-message pull requests in flight, no per-message wait; nats-py's own
  `fetch` reads about a quarter as fast), recording nothing.
- `raw_bulk` (beside the OpenSearch rebuilds): one `_bulk` index action per event the projection
  writes, carrying the document the live read model holds now for that aggregate at the event's
  version (external versioning), 500 actions a request, one request at a time, into a scratch
  index with the read model's mapping and settings, then a refresh. The request bodies are built
  before the clock starts: this is the store's ceiling.
- `raw_redis` (beside the analytics rebuild): the analytics counters of each event (the same
  commands on the same keys as DESIGN §6 needs: revenue and orders per day, units per product and
  day, names, prices, ratings) plus the per-aggregate version and the position, pipelined 500
  events a round-trip under a scratch prefix.
Events/s of a probe count every stream event it has covered, as a rebuild does."""

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError
from opensearchpy import AsyncOpenSearch
from opensearchpy.helpers import async_scan
from redis.asyncio import Redis

from bench.stats import latency_summary
from shop.projection.pull import Pull

COLUMNS = (
    "event_id, stream_id, stream_type, version, type, schema_version, data, occurred_at, correlation_id, causation_id"
)
INSERT_EVENTS = f"""insert into bench.events ({COLUMNS})
    select * from unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
                         $7::jsonb[], $8::timestamptz[], $9::text[], $10::text[])
    returning global_position"""
RAW_STREAM = "BENCH_RAW"


async def raw_pipeline(
    database: str, nc: NATS, seconds: float, concurrency: int, pool_size: int, items: int
) -> dict[str, object]:
    js = nc.jetstream()
    templates = [
        msgspec.json.decode((await js.get_last_msg("EVENTS", subject)).data)
        for subject in ("evt.order.OrderPlaced", "evt.product.ProductStockDecreased")
    ]
    pool = await asyncpg.create_pool(database, min_size=pool_size, max_size=pool_size)
    await pool.execute("""create schema if not exists bench; drop table if exists bench.outbox, bench.events;
        create table bench.events (like public.events including all);
        create table bench.outbox (like public.outbox including all,
                                   foreign key (global_position) references bench.events (global_position))""")
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(RAW_STREAM)
    await js.add_stream(
        StreamConfig(
            name=RAW_STREAM,
            subjects=["braw.>"],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            duplicate_window=600,
        )
    )
    latencies: list[float] = []
    end = time.monotonic() + seconds

    def one_command() -> list[dict]:
        correlation, now = str(uuid.uuid4()), datetime.now(UTC)
        order = {**templates[0], "stream_id": str(uuid.uuid4())}
        products = [{**templates[1], "stream_id": str(uuid.uuid4())} for _ in range(items)]
        return [
            {**e, "event_id": str(uuid.uuid4()), "correlation_id": correlation, "occurred_at": now.isoformat()}
            for e in (order, *products)
        ]

    async def worker() -> None:
        while (started := time.monotonic()) < end:
            events = one_command()
            rows = [
                (
                    e["event_id"],
                    e["stream_id"],
                    e["stream_type"],
                    e["version"],
                    e["type"],
                    e["schema_version"],
                    msgspec.json.encode(e["data"]).decode(),
                    datetime.fromisoformat(e["occurred_at"]),
                    e["correlation_id"],
                    e.get("causation_id"),
                )
                for e in events
            ]
            async with pool.acquire() as conn, conn.transaction():
                positions = await conn.fetch(INSERT_EVENTS, *map(list, zip(*rows, strict=True)))
                await conn.executemany(
                    "insert into bench.outbox (global_position) values ($1)",
                    [(p["global_position"],) for p in positions],
                )
            for e in events:
                subject = f"braw.{e['stream_type']}.{e['type']}"
                await js.publish(subject, msgspec.json.encode(e), headers={"Nats-Msg-Id": e["event_id"]})
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.monotonic() - started
    finally:
        await pool.execute("drop schema bench cascade")
        await pool.close()
        await js.delete_stream(RAW_STREAM)
    return {
        "commands": len(latencies),
        "seconds": took,
        "rate": len(latencies) / took,
        "events_per_command": 1 + items,
        "concurrency": concurrency,
        "pool_size": pool_size,
        "latency": latency_summary(latencies),
    }


async def bare_consumer(nc: NATS, limit: float) -> tuple[dict[str, object], list[tuple[int, bytes]]]:
    """Reads EVENTS from the start; returns the figures and every (stream sequence, payload) read."""
    js, name = nc.jetstream(), "bench-bare-consumer"
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer("EVENTS", name)
    config = ConsumerConfig(durable_name=name, deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE)
    info = (await js.stream_info("EVENTS")).state
    target = info.messages
    await js.add_consumer("EVENTS", config)
    pull = Pull(nc, "EVENTS", name, 1000)
    await pull.start()
    read: list[tuple[int, bytes]] = []
    series: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        while len(read) < target and time.monotonic() - started < limit:
            read += [(d.stream_seq, d.data) for d in await pull.take(1000, timeout=1)]
            series.append((time.monotonic() - started, len(read)))
    finally:
        took = time.monotonic() - started
        await pull.stop()
        await js.delete_consumer("EVENTS", name)
    return {
        "events": len(read),
        "stream_events": target,
        "seconds": took,
        "rate": len(read) / took,
        "partial": len(read) < target,
        "series": series,
    }, read


class StreamEvent(msgspec.Struct, frozen=True):
    stream_type: str
    stream_id: str
    version: int
    type: str
    data: dict


stream_event_decoder = msgspec.json.Decoder(StreamEvent)


async def raw_bulk(
    client: AsyncOpenSearch, alias: str, stream_type: str, events: list[StreamEvent], limit: float
) -> dict[str, object]:
    documents = {hit["_id"]: hit["_source"] async for hit in async_scan(client, index=alias, size=2000)}
    live = next(iter((await client.indices.get(index=alias)).values()))
    scratch = f"bench-raw-{alias}"
    settings = live["settings"]["index"]
    body = {
        "settings": {k: settings[k] for k in ("number_of_shards", "number_of_replicas")},
        "mappings": live["mappings"],
    }
    await client.indices.delete(index=scratch, ignore_unavailable=True)
    await client.indices.create(index=scratch, body=body)
    encoded = {doc_id: msgspec.json.encode(doc) for doc_id, doc in documents.items()}
    chunks: list[tuple[int, bytes]] = []  # (events covered once this request is done, request body)
    lines: list[bytes] = []
    for covered, event in enumerate(events, 1):
        if event.stream_type == stream_type and event.stream_id in encoded:
            action = {
                "index": {
                    "_index": scratch,
                    "_id": event.stream_id,
                    "version": event.version,
                    "version_type": "external",
                }
            }
            lines += [msgspec.json.encode(action), encoded[event.stream_id]]
        if len(lines) >= 1000 or (covered == len(events) and lines):
            chunks.append((covered, b"\n".join(lines) + b"\n"))
            lines = []
    series: list[tuple[float, int]] = []
    failed = written = 0
    started = time.monotonic()
    try:
        for covered, chunk in chunks:
            if time.monotonic() - started > limit:
                break
            reply = await client.bulk(body=chunk)
            written += len(reply["items"])
            failed += sum(1 for item in reply["items"] if item["index"].get("error")) if reply["errors"] else 0
            series.append((time.monotonic() - started, covered))
        await client.indices.refresh(index=scratch)
        took = time.monotonic() - started
    finally:
        await client.indices.delete(index=scratch, ignore_unavailable=True)
    done = series[-1][1] if series else 0
    return {
        "events": done,
        "documents_written": written,
        "failed": failed,
        "seconds": took,
        "rate": done / took,
        "partial": done < len(events),
        "series": series,
    }


def counter_commands(seq: int, event: StreamEvent, prefix: str) -> list[tuple]:
    """The analytics read model's writes for one event, as plain Redis commands."""
    data, commands = event.data, []
    match event.type:
        case "ProductCreated":
            commands += [
                ("HSET", f"{prefix}product_names", event.stream_id, data["name"]),
                ("HSET", f"{prefix}prices", event.stream_id, data["price"]),
            ]
        case "ProductPriceChanged":
            commands.append(("HSET", f"{prefix}prices", event.stream_id, data["new_price"]))
        case "ReviewAdded":
            commands.append(("HINCRBY", f"{prefix}ratings", str(data["rating"]), 1))
        case "OrderPlaced" | "OrderCancelled":
            sign, day = (1 if event.type == "OrderPlaced" else -1), data["placed_at"][:10]
            commands += [
                ("HINCRBY", f"{prefix}day:{day}", "revenue", sign * data["total"]),
                ("HINCRBY", f"{prefix}day:{day}", "orders", sign),
                ("ZADD", f"{prefix}days", datetime.fromisoformat(day).toordinal(), day),
            ]
            for item in data["items"]:
                commands += [
                    ("ZINCRBY", f"{prefix}units", sign * item["quantity"], item["product_id"]),
                    ("ZINCRBY", f"{prefix}units:{day}", sign * item["quantity"], item["product_id"]),
                    ("HSET", f"{prefix}product_names", item["product_id"], item["name"]),
                ]
    return [*commands, ("HSET", f"{prefix}applied", event.stream_id, event.version), ("SET", f"{prefix}position", seq)]


async def raw_redis(redis: Redis, read: list[tuple[int, StreamEvent]], limit: float) -> dict[str, object]:
    prefix = "bench:raw:"
    batches, batch = [], []
    for covered, (seq, event) in enumerate(read, 1):
        batch += counter_commands(seq, event, prefix)
        if covered % 500 == 0 or covered == len(read):
            batches.append((covered, batch))
            batch = []
    series: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        for covered, commands in batches:
            if time.monotonic() - started > limit:
                break
            pipe = redis.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            await pipe.execute()
            series.append((time.monotonic() - started, covered))
        took = time.monotonic() - started
    finally:
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.delete(key)
    done = series[-1][1] if series else 0
    commands = sum(len(c) for covered, c in batches if covered <= done)
    return {
        "events": done,
        "commands": commands,
        "seconds": took,
        "rate": done / took,
        "partial": done < len(read),
        "series": series,
    }
