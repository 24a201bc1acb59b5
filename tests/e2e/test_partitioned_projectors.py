"""Partitioned projectors (PROJECTION_PARTITIONS=8) with two processes of projector-catalog and of
projector-analytics under steady writes: the processes share the partitions four and four; one of each
killed with SIGKILL, the other owns all eight within 10 s; started again, it gets its four back.
Afterwards nothing is in the DLQ, no `fresh` read missed its write, every order's document is at the
event store's version, and every read model equals a from-scratch rebuild of itself (the rebuild runs in
the process holding partition 0, which takes every partition for it and gives the others back after)."""

import asyncio
import time

import httpx
import pytest

from shop.messaging import EVENTS_STREAM
from tests.conftest import NatsServer, free_ports
from tests.e2e.conftest import running_system
from tests.e2e.test_faults import everything_accounted_for, placed_at_least, traffic

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
