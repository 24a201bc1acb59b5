"""Faults while orders flow (DESIGN §5.2, §5.5): a projector killed with SIGKILL, OpenSearch and Redis
cut off for 10 s, NATS restarted. Afterwards nothing is in the DLQ, no read that said `fresh` missed
its write, every order's document has the version the event store has, and every read model equals
a from-scratch rebuild of itself, document by document and key by key."""

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlparse

import asyncpg
import httpx
import pytest
from opensearchpy import AsyncOpenSearch
from redis.asyncio import Redis

from shop.messaging import DLQ_STREAM, EVENTS_STREAM
from shop.read_models import ORDERS_ALIAS, PRODUCTS_ALIAS, analytics_pointer
from tests.conftest import OPENSEARCH_URL, REDIS_URL, NatsServer
from tests.e2e.conftest import System, running_system
from tests.faults import Proxy

pytestmark = pytest.mark.e2e


@dataclass
class Faulty:
    system: System
    opensearch: Proxy
    redis: Proxy
    nats: NatsServer


@pytest.fixture(scope="module")
async def faulty(tmp_path_factory):
    opensearch = Proxy(urlparse(OPENSEARCH_URL).port)
    redis = Proxy(urlparse(REDIS_URL).port or 6379)
    server = NatsServer(tmp_path_factory.mktemp("faults-nats"))
    try:
        async with running_system(
            tmp_path_factory.mktemp("faults-run"),
            server,
            OPENSEARCH_URL=opensearch.url("http"),
            REDIS_URL=redis.url("redis", urlparse(REDIS_URL).path),
        ) as system:
            yield Faulty(system, opensearch, redis, server)
    finally:
        opensearch.close()
        redis.close()
        server.stop()


@dataclass
class Traffic:
    """Orders placed one after another (~15/s) on a few products, some paid; each is read back with its
    position as consistency token: a `fresh` answer without the order is a false `fresh`."""

    system: System
    products: list[str]
    placed: int = 0
    statuses: Counter = field(default_factory=Counter)  # of every PlaceOrder answer
    positions: list[int | None] = field(default_factory=list)  # of every order placed
    false_fresh: list[str] = field(default_factory=list)
    stopping: bool = False

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.system.gateway, timeout=15) as client:
            for n in itertools.count():
                if self.stopping:
                    return
                user = self.system.token(f"buyer-{n % 7}")
                body = {"items": [{"product_id": random.choice(self.products), "quantity": 1}]}
                with contextlib.suppress(httpx.HTTPError):
                    placed = await client.post("/v1/orders", json=body, headers=user)
                    self.statuses[placed.status_code] += 1
                    if placed.status_code != 201:
                        await asyncio.sleep(0.1)  # NATS away: 503, nothing was done
                        continue
                    self.placed += 1
                    order = placed.json()
                    self.positions.append(order["position"])
                    if n % 3 == 0:
                        await client.post(f"/v1/orders/{order['id']}/pay", headers=user)
                    read = await client.get(
                        f"/v1/orders/{order['id']}", headers={**user, "X-Consistency-Token": str(order["position"])}
                    )
                    if read.headers.get("X-Consistency") == "fresh" and read.status_code != 200:
                        self.false_fresh.append(f"{order['id']}: {read.status_code}")
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def traffic(system: System):
    admin = system.token("boss", "admin")
    async with httpx.AsyncClient(base_url=system.gateway, timeout=15) as client:
        body = {"name": "Lamp", "price": 1_000, "stock": 100_000, "category": "home", "seller_id": "s"}
        products = [(await client.post("/v1/admin/products", json=body, headers=admin)).json()["id"] for _ in range(3)]
    flow = Traffic(system, products)
    task = asyncio.create_task(flow.run())
    try:
        yield flow
    finally:
        flow.stopping = True
        await task


async def placed_at_least(flow: Traffic, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    target = flow.placed + count
    while flow.placed < target:
        assert time.monotonic() < deadline, f"{flow.placed} orders placed, wanted {target}"
        await asyncio.sleep(0.05)


async def not_ready_within(system: System, service: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                ready = await http.get(f"http://127.0.0.1:{system.ports[service]}/health/ready")
                if ready.status_code == 503:
                    return ready.json()
            assert time.monotonic() < deadline, f"{service} stayed ready for {timeout}s"
            await asyncio.sleep(0.1)


async def test_a_projector_killed_mid_stream_resumes_without_loss(faulty):
    system = faulty.system
    async with traffic(system) as flow:
        await placed_at_least(flow, 15)
        system.kill("projector-catalog")  # events of the same products go on arriving
        system.kill("projector-order-list")
        await placed_at_least(flow, 5)  # slowly: each read back waits for the dead projectors, then says stale
        system.start()
        await placed_at_least(flow, 10)
    await everything_accounted_for(system, flow)


@pytest.mark.parametrize(("store", "projector"), [("opensearch", "catalog"), ("redis", "analytics")])
async def test_a_store_unreachable_for_10_seconds(faulty, store, projector):
    system, proxy = faulty.system, getattr(faulty, store)
    async with traffic(system) as flow:
        await placed_at_least(flow, 10)
        proxy.cut()
        try:
            report = await not_ready_within(system, f"projector-{projector}", 8)
            await asyncio.sleep(10)  # the outage goes on while orders flow
        finally:
            proxy.restore()
        await placed_at_least(flow, 10)
    assert report["checks"][store] != "ok"
    await everything_accounted_for(system, flow)


async def test_nats_restarted_under_writes(faulty):
    system = faulty.system
    async with traffic(system) as flow:
        await placed_at_least(flow, 10)
        faulty.nats.stop()
        await asyncio.sleep(2)
        faulty.nats.start()
        await placed_at_least(flow, 20)
    await everything_accounted_for(system, flow)


async def everything_accounted_for(system: System, flow: Traffic) -> None:
    assert flow.false_fresh == [], f"{len(flow.false_fresh)} reads said fresh without their write"
    nc = await system.nats.connect("ops")
    try:
        js = nc.jetstream()
        last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        await system.caught_up(last, timeout=60)
        assert (await js.stream_info(DLQ_STREAM)).state.messages == 0, "events were dead-lettered"
    finally:
        await nc.close()
    await orders_match_the_event_store(system)
    before = await snapshot(system)
    await rebuild_all(system)
    assert await snapshot(system) == before


async def orders_match_the_event_store(system: System) -> None:
    db = await asyncpg.connect(system.database_url)
    try:
        rows = await db.fetch("select stream_id, max(version) from events where stream_type = 'order' group by 1")
    finally:
        await db.close()
    search = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
    try:
        found = await search.mget(index=system.index_prefix + ORDERS_ALIAS, body={"ids": [r[0] for r in rows]})
    finally:
        await search.close()
    versions = {d["_id"]: d["_source"]["version"] if d["found"] else None for d in found["docs"]}
    assert versions == {r[0]: r[1] for r in rows}


async def snapshot(system: System) -> dict:
    """Every document of both indexes and every key of the active analytics generation but its checkpoint."""
    seen: dict = {}
    search = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
    try:
        for alias in (ORDERS_ALIAS, PRODUCTS_ALIAS):
            await search.indices.refresh(index=system.index_prefix + alias)
            hits = await search.search(
                index=system.index_prefix + alias, body={"query": {"match_all": {}}, "size": 10_000, "version": True}
            )
            seen[alias] = {h["_id"]: (h["_source"], h.get("_version")) for h in hits["hits"]["hits"]}
    finally:
        await search.close()
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        prefix = await redis.get(analytics_pointer(system.env["ANALYTICS_PREFIX"]))
        async for key in redis.scan_iter(match=f"{prefix}*"):
            kind = await redis.type(key)
            value = {
                "hash": lambda k: redis.hgetall(k),
                "zset": lambda k: redis.zrange(k, 0, -1, withscores=True),
                "string": lambda k: redis.get(k),
            }[kind](key)
            seen[key.removeprefix(prefix)] = await value
    finally:
        await redis.aclose()
    # where the projection is, not what it shows: a batch with nothing for a process's partitions moves its
    # checkpoint only in memory until its next write, while a replay stores every partition's
    seen.pop("checkpoint", None)
    return seen


async def rebuild_all(system: System) -> None:
    async with httpx.AsyncClient(timeout=10, headers=system.ops) as http:
        for name in ("catalog", "order-list", "analytics"):
            url = f"http://127.0.0.1:{await system.owner_port(name)}/rebuild"
            assert (await http.post(url)).status_code == 202
            deadline = time.monotonic() + 60
            while (status := (await http.get(url)).json())["state"] not in ("done", "failed"):
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.1)
            assert status["state"] == "done", status
