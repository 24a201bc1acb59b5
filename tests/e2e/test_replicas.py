"""Two command-services and two query-services (COMMAND_SERVICE_REPLICAS=2, QUERY_SERVICE_REPLICAS=2)
share the load through their queue groups. One of each is killed with SIGKILL while orders are placed
and read: every order a 201 announced is in the event store and readable afterwards, every 201 has
its position, and the failures are 503 (or 504 `outcome_unknown` for a command the killed replica had
in hand), never a 500."""

import asyncio
import contextlib
from collections import Counter

import asyncpg
import httpx
import pytest

from tests.conftest import NatsServer, free_ports
from tests.e2e.conftest import System, running_system

pytestmark = pytest.mark.e2e

WORKERS = 6


@pytest.fixture(scope="module")
async def replicated(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("replicas-nats"))
    command_port, query_port = free_ports(2)
    try:
        async with running_system(
            tmp_path_factory.mktemp("replicas-run"),
            server,
            COMMAND_SERVICE_REPLICAS="2",
            QUERY_SERVICE_REPLICAS="2",
            COMMAND_SERVICE_HTTP_PORT_2=str(command_port),
            QUERY_SERVICE_HTTP_PORT_2=str(query_port),
            GATEWAY_COMMAND_TIMEOUT="3",  # a command lost with its replica is a 504 after 3 s
        ) as system:
            yield system, {"command-service-2": command_port, "query-service-2": query_port}
    finally:
        server.stop()


async def answered(port: int, subject_prefix: str) -> float:
    """How many requests the process on this ops port has answered (its /metrics)."""
    async with httpx.AsyncClient(timeout=3) as http:
        metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("shop_requests_total{") and f'subject="{subject_prefix}' in line
    )


async def test_a_replica_of_each_killed_under_load(replicated):
    system, replica_ports = replicated
    admin = system.token("boss", "admin")
    statuses: Counter = Counter()
    placed: dict[str, int | None] = {}  # order id -> the position of its 201
    stopping = asyncio.Event()

    async with httpx.AsyncClient(base_url=system.gateway, timeout=15) as client:
        body = {"name": "Cup", "price": 500, "stock": 100_000, "category": "home", "seller_id": "s"}
        product = (await client.post("/v1/admin/products", json=body, headers=admin)).json()["id"]

        async def worker(n: int) -> None:
            user = system.token(f"buyer-{n}")
            while not stopping.is_set():
                with contextlib.suppress(httpx.TransportError):
                    reply = await client.post(
                        "/v1/orders", json={"items": [{"product_id": product, "quantity": 1}]}, headers=user
                    )
                    statuses["place", reply.status_code] += 1
                    if reply.status_code != 201:
                        continue
                    order = reply.json()
                    placed[order["id"]] = order["position"]
                    token = {**user, "X-Consistency-Token": str(order["position"])}
                    read = await client.get(f"/v1/orders/{order['id']}", headers=token)
                    statuses["read", read.status_code] += 1

        workers = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
        try:
            await until(lambda: len(placed) >= 30)
            # both replicas of each took their share before one of each is killed
            ports = {**system.ports, **replica_ports}
            for name in ("command-service", "command-service-2"):
                assert await answered(ports[name], "cmd.") > 0, f"{name} answered no command"
            for name in ("query-service", "query-service-2"):
                assert await answered(ports[name], "qry.") > 0, f"{name} answered no query"
            system.kill("command-service-2")
            system.kill("query-service")
            before = len(placed)
            await until(lambda: len(placed) >= before + 30)
        finally:
            stopping.set()
            await asyncio.gather(*workers)

        failures = {key: count for key, count in statuses.items() if key[1] not in (200, 201)}
        assert set(failures) <= {("place", 503), ("place", 504), ("read", 503)}, statuses
        assert None not in placed.values(), "a 201 without its position"
        last = max(placed.values())
        for order_id in placed:  # each one readable, from the surviving query-service
            read = await client.get(f"/v1/orders/{order_id}", headers={**admin, "X-Consistency-Token": str(last)})
            assert (read.status_code, read.headers["X-Consistency"]) == (200, "fresh"), order_id
    await in_the_event_store(system, placed)


async def in_the_event_store(system: System, placed: dict[str, int | None]) -> None:
    db = await asyncpg.connect(system.database_url)
    try:
        rows = await db.fetch(
            "select stream_id, stream_seq from events where type = 'OrderPlaced' and stream_id = any($1::text[])",
            list(placed),
        )
    finally:
        await db.close()
    assert {r["stream_id"] for r in rows} == placed.keys()
    # published, and the 201's position (its command's last event) not before it
    assert all(r["stream_seq"] is not None and r["stream_seq"] <= placed[r["stream_id"]] for r in rows)


async def until(condition, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.05)
