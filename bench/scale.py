"""Stage 6: a partitioned projector (PROJECTION_PARTITIONS=8) with 1 and with 2 processes.

Live throughput: the projector is stopped where the stream ends while orders pile up (wrk at saturation
for `plan.scale_backlog_seconds`), then started with n processes; its rate is the backlog over the time
from the start until every process has passed it (each process's position is the lowest of its
partitions'), the processes' start included. Rebuild: analytics and catalog rebuilt with n processes
(a rebuild runs in the process holding partition 0, which takes every partition for it:
docs/partitioned-projectors.md). Afterwards the projector runs again as `./justw up` started it."""

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from bench.load import run_wrk
from bench.rebuilds import rebuild
from bench.run import Bench
from bench.system import ROOT, RUN_DIR
from shop.read_models import ops_headers, ops_urls

PARTITIONS = 8
PROJECTORS = ("catalog", "analytics")


def _variable(projector: str) -> str:
    return f"PROJECTOR_{projector.upper().replace('-', '_')}"


def _stop(projector: str) -> None:
    """SIGTERM every process of the projector (a graceful stop gives its leases up), then wait for them."""
    pids = []
    for path in (RUN_DIR / "pids").glob(f"projector-{projector}*.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            pid = int(path.read_text())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _status(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"projector-{projector} did not stop in 60 s")
        time.sleep(0.1)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


def _start(env: dict[str, str]) -> None:
    """deploy/services.sh start: whatever is not running, with `env`; returns once every process is ready."""
    started = subprocess.run(
        [ROOT / "deploy" / "services.sh", "start"], env=env, capture_output=True, text=True, timeout=300
    )
    if started.returncode != 0:
        raise RuntimeError(f"services.sh start failed: {started.stdout}{started.stderr}")


def _settings(projector: str, processes: int) -> dict[str, str]:
    return {"PROJECTION_PARTITIONS": str(PARTITIONS), f"{_variable(projector)}_REPLICAS": str(processes)}


async def _lowest_position(http: httpx.AsyncClient, projector: str, urls: list[str]) -> int:
    """The lowest position over the projector's processes that project (their /metrics)."""
    line = f'shop_projection_position{{projector="{projector}"}} '
    found = []
    for url in urls:
        if not (await http.get(f"{url}/lease")).json()["projecting"]:
            continue
        metrics = (await http.get(f"{url}/metrics")).text
        found += [int(float(x.split()[-1])) for x in metrics.splitlines() if x.startswith(line)]
    return min(found, default=0)


async def _shared(http: httpx.AsyncClient, urls: list[str], timeout: float = 60) -> None:
    """Until the processes own every partition, each its share."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [(await http.get(f"{url}/lease")).json()["partitions"] for url in urls]
        share = -(-PARTITIONS // len(urls))
        if sorted(p for parts in owned for p in parts) == list(range(PARTITIONS)) and all(
            len(parts) <= share for parts in owned
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"partitions not shared after {timeout:.0f}s: {owned}")
        await asyncio.sleep(0.2)


async def _settled(bench: Bench) -> int:
    """The stream's last sequence once it has stopped growing (the relay publishes after the replies)."""
    last = await bench.last_position()
    while True:
        await asyncio.sleep(1)
        if (now := await bench.last_position()) == last:
            return last
        last = now


async def catch_up_rate(bench: Bench, projector: str, processes: int) -> dict[str, object]:
    """Stop the projector where the stream ends, pile up a backlog, start it with `processes`, and time it
    from the start (the processes' own start included, the same for any number) until every partition has
    passed the backlog."""
    env = {**os.environ, **_settings(projector, processes)}
    await bench.catch_up()
    start = await _settled(bench)
    _stop(projector)
    await run_wrk(
        f"backlog for {projector}",
        bench.addresses.gateway,
        "orders.lua",
        bench.order_env("products.txt", bench.plan.items),
        bench.plan.scale_backlog_seconds,
        bench.plan.connections,
    )
    end = await _settled(bench)
    started = time.monotonic()
    _start(env)
    urls = _urls(projector, env)
    async with httpx.AsyncClient(timeout=10) as http:
        while (position := await _lowest_position(http, projector, urls)) < end:
            if time.monotonic() - started > bench.plan.catch_up_limit:
                raise RuntimeError(f"{projector} with {processes} processes not at {end} after the limit")
            await asyncio.sleep(0.1)
        seconds = time.monotonic() - started
        await _shared(http, urls)
    return {
        "processes": processes,
        "events": end - start,
        "seconds": round(seconds, 2),
        "rate": (end - start) / seconds if seconds else 0.0,
        "position": position,
    }


def _urls(projector: str, env: dict[str, str]) -> list[str]:
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return ops_urls(projector)
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def run(bench: Bench) -> dict[str, object]:
    plan = bench.plan
    seconds = len(PROJECTORS) * 2 * (plan.scale_backlog_seconds + 30 + plan.rebuild_limit)
    results: dict[str, object] = {"partitions": PARTITIONS}
    async with bench.stage("6 Scale-out", seconds) as say:
        for projector in PROJECTORS:
            figures = {}
            try:
                for processes in (1, 2):
                    say(f"{projector}: backlog, then {processes} process(es) catching up")
                    live = await catch_up_rate(bench, projector, processes)
                    say(f"{projector}: rebuild with {processes} process(es)")
                    urls = _urls(projector, {**os.environ, **_settings(projector, processes)})
                    leader = await _leader(urls)
                    rebuilt = await rebuild(bench.addresses, projector, plan.rebuild_limit, url=leader)
                    rebuilt.pop("series")
                    if rebuilt["partial"]:  # its rate is measured; the rest is thrown away
                        say(f"{projector}: cancelling the partial rebuild")
                        async with httpx.AsyncClient(base_url=leader, timeout=60, headers=ops_headers()) as http:
                            rebuilt["cancelled"] = (await http.delete("/rebuild")).status_code == 200
                    figures[processes] = {"live": live, "rebuild": rebuilt}
            finally:  # as ./justw up started it
                say(f"{projector}: back to its usual processes")
                _stop(projector)
                _start(dict(os.environ))
            figures["live_speed_up"] = figures[2]["live"]["rate"] / figures[1]["live"]["rate"]
            figures["rebuild_speed_up"] = figures[2]["rebuild"]["rate"] / (figures[1]["rebuild"]["rate"] or 1)
            results[projector] = figures
        say("projections catching up")
        await bench.catch_up()
    return results


async def _leader(urls: list[str]) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        for url in urls:
            if (await http.get(f"{url}/lease")).json()["leader"]:
                return url
    raise RuntimeError(f"no process of {urls} leads")
