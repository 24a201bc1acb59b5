"""Partitioned projectors (PROJECTION_PARTITIONS=8) with two processes of projector-catalog and of
projector-analytics under steady writes: the processes share the partitions four and four; one of each
killed with SIGKILL, the other owns all eight within 10 s; started again, it gets its four back.
Afterwards nothing is in the DLQ, no `fresh` read missed its write, every order's document is at the
event store's version, and every read model equals a from-scratch rebuild of itself (the rebuild runs in
the process holding partition 0, which takes every partition for the switch and gives the others back
after). A rebuild's replay is shared: the other process replays its own partitions into the new
generation; a cancel takes every partition back before the generation is deleted."""

import asyncio
import os
import signal
import time

import httpx
import pytest
from opensearchpy import AsyncOpenSearch

from shop.messaging import EVENTS_STREAM
from shop.projection.engine import partition
from tests.conftest import OPENSEARCH_URL, NatsServer, free_ports
from tests.e2e.conftest import running_system
from tests.e2e.test_faults import everything_accounted_for, placed_at_least, traffic
from tests.e2e.test_projector_failover import lease
from tests.e2e.test_rebuild_crashes import died, generations, start_with_failpoint

pytestmark = pytest.mark.e2e

PARTITIONS = 8
PROJECTORS = ("projector-catalog", "projector-analytics")


@pytest.fixture(scope="module")
async def shared(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("partitions-nats"))
    catalog_port, analytics_port = free_ports(2)
    try:
        async with running_system(
            tmp_path_factory.mktemp("partitions-run"),
            server,
            PROJECTION_PARTITIONS=str(PARTITIONS),
            PROJECTOR_CATALOG_REPLICAS="2",
            PROJECTOR_CATALOG_HTTP_PORT_2=str(catalog_port),
            PROJECTOR_ANALYTICS_REPLICAS="2",
            PROJECTOR_ANALYTICS_HTTP_PORT_2=str(analytics_port),
        ) as system:
            yield system
    finally:
        server.stop()


async def owned(system, service: str) -> dict[str, list[int]]:
    """The partitions each running process of `service` projects (a process that does not answer: none)."""
    found = {}
    async with httpx.AsyncClient(timeout=2) as http:
        for instance, port in system.instances(service).items():
            try:
                found[instance] = (await http.get(f"http://127.0.0.1:{port}/lease")).json()["partitions"]
            except httpx.HTTPError:
                found[instance] = []
    return found


async def shared_as(system, service: str, wanted: dict[str, int], timeout: float) -> None:
    """Until the processes of `service` own `wanted` partitions each, every one exactly once."""
    started = time.monotonic()
    while True:
        found = await owned(system, service)
        every = sorted(p for parts in found.values() for p in parts)
        if every == list(range(PARTITIONS)) and {k: len(v) for k, v in found.items()} == wanted:
            return
        assert time.monotonic() - started < timeout, f"{service}: {found}, not {wanted} after {timeout}s"
        await asyncio.sleep(0.05)


async def test_partitions_are_shared_taken_over_from_a_killed_process_and_given_back(shared):
    system = shared
    even = {service: dict.fromkeys(system.instances(service), PARTITIONS // 2) for service in PROJECTORS}
    for service in PROJECTORS:
        await shared_as(system, service, even[service], timeout=20)

    async with traffic(system) as flow:
        await placed_at_least(flow, 15)
        nc = await system.nats.connect("ops")
        try:  # each process reads through a consumer of its own (by its slot), so they do not take each other's
            consumers = {c.name for c in await nc.jetstream().consumers_info(EVENTS_STREAM)}
        finally:
            await nc.close()
        assert {"catalog", "catalog-2", "analytics", "analytics-2"} <= consumers, consumers
        killed = {service: list(system.instances(service))[1] for service in PROJECTORS}
        for instance in killed.values():
            system.kill(instance)
        killed_at, took_over = time.monotonic(), {}
        for service, instance in killed.items():
            (other,) = set(system.instances(service)) - {instance}
            await shared_as(system, service, {other: PARTITIONS, instance: 0}, timeout=15)
            took_over[service] = time.monotonic() - killed_at
        await placed_at_least(flow, 15)

        system.start()  # the killed ones again: each gets its share back
        for service in PROJECTORS:
            await shared_as(system, service, even[service], timeout=20)
        await placed_at_least(flow, 15)

    assert all(seconds <= 10 for seconds in took_over.values()), took_over
    await everything_accounted_for(system, flow)
    for service in PROJECTORS:  # the rebuilds over, the leader has given the others their share back
        await shared_as(system, service, even[service], timeout=20)


async def test_the_replay_is_shared_by_the_processes_and_a_cancel_takes_the_partitions_back_first(shared):
    """The leader pauses in its replay (failpoint) before it would ask for every partition: the other process
    replays its four partitions' products into the new generation. The cancel then takes every
    partition (so nothing writes into the generation any more), deletes it and gives the shares back."""
    system, service = shared, "projector-catalog"
    even = dict.fromkeys(system.instances(service), PARTITIONS // 2)
    admin = system.token("boss", "admin")
    async with httpx.AsyncClient(base_url=system.gateway, timeout=15) as client:  # in every partition, surely
        body = {"name": "Cup", "price": 500, "stock": 10, "category": "home", "seller_id": "s"}
        for _ in range(24):
            assert (await client.post("/v1/admin/products", json=body, headers=admin)).status_code == 201
    nc = await system.nats.connect("ops")
    try:
        await system.caught_up((await nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq)
    finally:
        await nc.close()
    generations_before = await generations(system)
    for instance in system.instances(service):
        os.kill(system.pid(instance), signal.SIGTERM)
    for instance in system.instances(service):
        died(system, instance)
    start_with_failpoint(system, "rebuild.replaying=pause")
    try:
        await shared_as(system, service, even, timeout=20)
        leaders = [i for i in system.instances(service) if (await lease(system, i))["leader"]]
        (helper,) = set(system.instances(service)) - set(leaders)
        (leader,) = leaders
        helped = (await lease(system, helper))["partitions"]
        url = f"http://127.0.0.1:{system.instances(service)[leader]}/rebuild"
        async with httpx.AsyncClient(timeout=60) as http:  # a cancel waits for the partitions to come
            assert (await http.post(url, headers=system.ops)).status_code == 202
            deadline = time.monotonic() + 30
            while not (generation := (await http.get(url)).json()["generation"]):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            # the other process has replayed its partitions' products into the new generation (a read by id
            # sees them unrefreshed)
            search = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
            try:
                await search.indices.refresh(index=f"{system.index_prefix}products")
                active = await search.search(
                    index=f"{system.index_prefix}products", body={"size": 10_000, "version": True}
                )
                wanted = {
                    h["_id"]: h["_version"] for h in active["hits"]["hits"] if partition(h["_id"], PARTITIONS) in helped
                }
                assert wanted  # the history has products in those partitions
                while True:
                    found = await search.mget(index=generation, body={"ids": list(wanted)}, realtime=True)
                    replayed = {d["_id"]: d["_version"] for d in found["docs"] if d.get("found")}
                    if replayed == wanted:
                        break
                    assert time.monotonic() < deadline, (replayed, wanted)
                    await asyncio.sleep(0.1)
            finally:
                await search.close()
            assert (await lease(system, helper))["partitions"] == helped  # shared until the cancel

            cancelled = await http.delete(url, headers=system.ops)
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
        assert await generations(system) == generations_before
        await shared_as(system, service, even, timeout=20)
    finally:  # without the failpoint again
        for instance in system.instances(service):
            os.kill(system.pid(instance), signal.SIGTERM)
        for instance in system.instances(service):
            died(system, instance)
        system.start()
