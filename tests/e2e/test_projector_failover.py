"""Two processes of projector-catalog (PROJECTOR_CATALOG_REPLICAS=2): the one holding the lease projects,
the other stands by. Killed with SIGKILL under writes, the owner is replaced within 10 s and, started
again, stands by; stopped with SIGSTOP past its lease and let go on with SIGCONT, it starts no write.
Afterwards nothing is in the DLQ, no `fresh` read missed its write, and every read model equals a
from-scratch rebuild of itself. A rebuild whose owner dies mid-replay is finished by the standby."""

import asyncio
import os
import signal
import time

import httpx
import pytest

from shop.messaging import EVENTS_STREAM
from tests.conftest import NatsServer, free_ports
from tests.e2e.conftest import running_system
from tests.e2e.histories import history, read_models
from tests.e2e.test_faults import everything_accounted_for, placed_at_least, traffic
from tests.e2e.test_rebuild_crashes import died, finished, generations, start_with_failpoint

pytestmark = pytest.mark.e2e

PROJECTOR = "projector-catalog"


@pytest.fixture(scope="module")
async def pair(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("failover-nats"))
    (second_port,) = free_ports(1)
    try:
        async with running_system(
            tmp_path_factory.mktemp("failover-run"),
            server,
            PROJECTOR_CATALOG_REPLICAS="2",
            PROJECTOR_CATALOG_HTTP_PORT_2=str(second_port),
        ) as system:
            yield system
    finally:
        server.stop()


async def lease(system, instance: str) -> dict:
    async with httpx.AsyncClient(timeout=3) as http:
        return (await http.get(f"http://127.0.0.1:{system.instances(PROJECTOR)[instance]}/lease")).json()


async def writes(system, instance: str) -> float:
    """Writes to the read model the process has started (its /metrics)."""
    async with httpx.AsyncClient(timeout=3) as http:
        metrics = (await http.get(f"http://127.0.0.1:{system.instances(PROJECTOR)[instance]}/metrics")).text
    line = 'shop_projection_writes_total{projector="catalog"} '
    return sum(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(line))


async def standing_by(system, instance: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while (found := await lease(system, instance))["projecting"] or found["owner"] in (None, found["member"]):
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)
    return found


async def test_a_killed_owner_is_replaced_within_10_seconds_and_comes_back_as_standby(pair):
    system = pair
    async with traffic(system) as flow:
        await placed_at_least(flow, 15)
        first = await system.projecting("catalog")
        (other,) = set(system.instances(PROJECTOR)) - {first}
        assert not (await lease(system, other))["projecting"]

        system.kill(first)
        killed_at = time.monotonic()
        assert await system.projecting("catalog", timeout=10, among={other}) == other
        took_over_after = time.monotonic() - killed_at
        await placed_at_least(flow, 15)

        system.start()  # the killed one again: the lease is taken, it stands by
        back = await standing_by(system, first)
        assert back["owner"] == (await lease(system, other))["member"]
        await placed_at_least(flow, 10)

    assert took_over_after <= 10
    await everything_accounted_for(system, flow)


async def test_a_stalled_owner_starts_no_write_after_losing_its_lease(pair):
    system = pair
    async with traffic(system) as flow:  # so that its pull requests have events on their way when it stalls
        await placed_at_least(flow, 10)
    nc = await system.nats.connect("ops")
    try:
        await system.caught_up((await nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq)
    finally:
        await nc.close()
    stalled = await system.projecting("catalog")
    (other,) = set(system.instances(PROJECTOR)) - {stalled}
    before = await writes(system, stalled)  # nothing to write now: it has caught up and no order comes

    os.kill(system.pid(stalled), signal.SIGSTOP)
    try:
        async with traffic(system) as flow:
            assert await system.projecting("catalog", timeout=10, among={other}) == other
            await placed_at_least(flow, 20)
            os.kill(system.pid(stalled), signal.SIGCONT)
            await standing_by(system, stalled)
            await placed_at_least(flow, 10)
    finally:
        os.kill(system.pid(stalled), signal.SIGCONT)

    assert await writes(system, stalled) == before
    await everything_accounted_for(system, flow)


async def test_a_rebuild_whose_owner_dies_is_finished_by_the_standby(pair):
    """The owner kills itself in the middle of a replay (failpoint): the standby takes the lease, finds the
    rebuild's stored state and finishes it; the read model is complete and only its new generation is left."""
    system = pair
    async with httpx.AsyncClient(base_url=system.gateway, timeout=15) as client:
        products, orders, position = await history(client, system)
        before = await read_models(client, system, products, orders, position)
    generations_before = await generations(system)
    for instance in system.instances(PROJECTOR):
        os.kill(system.pid(instance), signal.SIGTERM)  # a graceful stop gives the lease up
    for instance in system.instances(PROJECTOR):
        died(system, instance)
    # the first process alone, with the failpoint; then the second, without it
    start_with_failpoint(system, "rebuild.replaying=kill", PROJECTOR_CATALOG_REPLICAS="1")
    system.start()
    first, second = system.instances(PROJECTOR)
    assert await system.projecting("catalog") == first
    try:
        async with httpx.AsyncClient(timeout=10, headers=system.ops) as http:
            assert (
                await http.post(f"http://127.0.0.1:{system.instances(PROJECTOR)[first]}/rebuild")
            ).status_code == 202
            died(system, first)  # at the step
            assert await system.projecting("catalog", timeout=10, among={second}) == second
            status = await finished(http, f"http://127.0.0.1:{system.instances(PROJECTOR)[second]}/rebuild")
            assert status["state"] == "done", status
    finally:
        system.start()  # the first one again, as the standby

    async with httpx.AsyncClient(base_url=system.gateway, timeout=15) as client:
        assert await read_models(client, system, products, orders, position) == before
    found = await generations(system)
    assert found["catalog"] == found["catalog active"] != generations_before["catalog active"], found
