"""Runs wrk with one of the Lua scripts in `bench/wrk/` and reads its JSON summary line."""

import asyncio
import os
import signal
from pathlib import Path

import msgspec

WRK_DIR = Path(__file__).parent / "wrk"
THREADS = 2  # one per core of the development machine; wrk's threads are event loops, never the bottleneck here


class WrkResult(msgspec.Struct, kw_only=True):
    label: str
    connections: int
    offered_rate: float | None  # requests/s asked for; None: saturation
    requests: int
    seconds: float
    rate: float  # achieved requests/s
    latency_ms: dict[str, float]
    errors: dict[str, int]  # socket errors, timeouts and `status` (answers that were not 2xx/3xx)
    statuses: dict[str, int] = {}  # per HTTP status (orders.lua only)


async def run_wrk(
    label: str,
    url: str,
    script: str,
    env: dict[str, str],
    seconds: float,
    connections: int = 32,
    rate: float | None = None,
    stop: asyncio.Event | None = None,
) -> WrkResult:
    """Runs `wrk` for `seconds` (or until `stop` is set, which interrupts it like Ctrl-C)."""
    variables = {**os.environ, **env, "BENCH_WRK_DIR": str(WRK_DIR), "BENCH_THREADS": str(THREADS)}
    variables["BENCH_RATE"] = str(rate or 0)
    command = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s"]
    process = await asyncio.create_subprocess_exec(
        *command, "-s", str(WRK_DIR / script), url, env=variables, stdout=asyncio.subprocess.PIPE
    )
    if stop is not None:
        waiting = asyncio.create_task(stop.wait())
        finished = asyncio.create_task(process.wait())
        await asyncio.wait({waiting, finished}, return_when=asyncio.FIRST_COMPLETED)
        if not finished.done():
            process.send_signal(signal.SIGINT)
        waiting.cancel()
    out, _ = await process.communicate()
    line = next((x for x in out.decode().splitlines() if x.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk {label} failed ({process.returncode}):\n{out.decode()}")
    summary = msgspec.json.decode(line.removeprefix("BENCH_JSON "))
    took = summary["duration_us"] / 1e6
    return WrkResult(
        label=label,
        connections=connections,
        offered_rate=rate,
        requests=summary["requests"],
        seconds=took,
        rate=summary["requests"] / took,
        latency_ms={f"{k}_ms": v / 1000 for k, v in summary["latency_us"].items()},
        errors=summary["errors"],
        statuses=summary.get("statuses", {}),
    )
