"""A rebuild stopped at any step, by SIGKILL or SIGTERM, is finished when the projector starts again:
the read model is complete and serving, and only the active generation is left (DESIGN §5.7)."""

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from opensearchpy import AsyncOpenSearch
from redis.asyncio import Redis

from shop.read_models import analytics_pointer
from tests.conftest import OPENSEARCH_URL, REDIS_URL
from tests.e2e.conftest import SERVICES_SH, System
from tests.e2e.histories import history, read_models

pytestmark = pytest.mark.e2e

STEPS = ("rebuild.replaying", "rebuild.switching", "rebuild.switched")


def start_with_failpoint(system: System, failpoint: str, **settings: str) -> None:
    """Start what is not running (the one projector) with a failpoint set (and `settings`)."""
    env = {**system.env, "SHOP_FAILPOINTS": failpoint, **settings}
    started = subprocess.run([SERVICES_SH, "start"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr


def died(system: System, service: str, timeout: float = 30) -> None:
    pid, deadline = system.pid(service), time.monotonic() + timeout
    status = Path(f"/proc/{pid}/status")
    while status.exists() and "zombie" not in status.read_text():
        assert time.monotonic() < deadline, f"{service} is still running"
        time.sleep(0.05)


async def finished(http: httpx.AsyncClient, url: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (status := (await http.get(url)).json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
    return status


async def generations(system: System) -> dict[str, set[str]]:
    """The generations each read model has in its store, and the active one."""
    base = system.env["ANALYTICS_PREFIX"]
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    search = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
    try:
        keys = [k async for k in redis.scan_iter(match=f"{base}g*")]
        analytics = {m.group(0) for k in keys if (m := re.match(rf"{re.escape(base)}g\d+:", k))}
        catalog = set(await search.indices.get(index=f"{system.index_prefix}products-v*"))
        return {
            "analytics": analytics,
            "analytics active": {await redis.get(analytics_pointer(base))},
            "catalog": catalog,
            "catalog active": set(await search.indices.get_alias(name=f"{system.index_prefix}products")),
        }
    finally:
        await redis.aclose()
        await search.close()


@pytest.mark.parametrize("how", ["kill", "term"])
@pytest.mark.parametrize("step", STEPS)
async def test_a_rebuild_stopped_at_any_step_is_finished_on_start(client, system, step, how):
    products, orders, position = await history(client, system)
    before = await read_models(client, system, products, orders, position)
    redis = Redis.from_url(REDIS_URL)  # the state a crash between two separate writes once left
    await redis.delete(f"{system.env['ANALYTICS_PREFIX']}generations")
    await redis.aclose()
    services = ("projector-catalog", "projector-analytics")

    for service in services:
        os.kill(system.pid(service), signal.SIGTERM)
    for service in services:
        died(system, service)
    start_with_failpoint(system, f"{step}={how}")
    async with httpx.AsyncClient(timeout=10) as http:
        urls = [f"http://127.0.0.1:{system.ports[service]}/rebuild" for service in services]
        for url in urls:
            assert (await http.post(url, headers=system.ops)).status_code == 202
        for service in services:
            died(system, service)  # at the step
        system.start()  # without the failpoint: each rebuild is resumed and finished
        for url in urls:
            status = await finished(http, url)
            assert status["state"] == "done", status

    assert await read_models(client, system, products, orders, position) == before
    found = await generations(system)
    assert found["analytics"] == found["analytics active"] and found["catalog"] == found["catalog active"], found


async def test_a_cancelled_rebuild_leaves_the_active_generation_alone(client, system):
    products, orders, position = await history(client, system)
    before = await read_models(client, system, products, orders, position)
    generations_before = await generations(system)
    services = ("projector-catalog", "projector-analytics")
    for service in services:
        os.kill(system.pid(service), signal.SIGTERM)
    for service in services:
        died(system, service)
    start_with_failpoint(system, "rebuild.replaying=pause")
    try:
        async with httpx.AsyncClient(timeout=60) as http:  # a cancel waits for the replay's batch in hand
            for service in services:
                url = f"http://127.0.0.1:{system.ports[service]}/rebuild"
                assert (await http.post(url, headers=system.ops)).status_code == 202
                deadline = time.monotonic() + 20
                while not (await http.get(url)).json()["generation"]:  # its state is stored
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                cancelled = await http.delete(url, headers=system.ops)
                assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled", cancelled.text
                assert (await http.delete(url, headers=system.ops)).status_code == 404  # nothing left to cancel
    finally:  # without the failpoint again, whatever happened: the tests after this one share the system
        for service in services:
            os.kill(system.pid(service), signal.SIGTERM)
            died(system, service)
        system.start()

    assert await generations(system) == generations_before
    assert await read_models(client, system, products, orders, position) == before
