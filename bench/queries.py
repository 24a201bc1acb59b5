"""Stage 4: four queries through the gateway with wrk (bench/wrk/queries.lua), at saturation and at
a fixed rate (bench/wrk/pace.lua says how the rate is kept), each beside the bare endpoint
(`bench.bare`) answering the same JSON bytes from memory, measured the same two ways."""

import asyncio
import json
import sys
import time

import httpx

from bench.load import WrkResult, run_wrk
from bench.run import Bench
from bench.shop import CATEGORIES, WORDS, write_lines

BARE_PORT = 8007  # next to the shop's 8000-8005 and the gateway's ops port 8006


def query_paths(bench: Bench) -> dict[str, list[str]]:
    return {
        "product detail": [f"/v1/products/{p}" for p in bench.products],
        "product list": [f"/v1/products?category=bench-{c}&sort=newest&page=1&size=20" for c in range(CATEGORIES)],
        "search": [f"/v1/products/search?q={word}" for word in WORDS],
        "my orders": ["/v1/orders?page=1&size=20"],
    }


def figures(result: WrkResult) -> dict[str, object]:
    return {
        "rate": result.rate,
        "offered_rate": result.offered_rate,
        "latency_ms": result.latency_ms,
        "errors": result.errors,
        "requests": result.requests,
        "seconds": result.seconds,
    }


async def measure(bench: Bench, label: str, url: str, paths: list[str], seconds: float) -> dict[str, object]:
    plan, env = (
        bench.plan,
        {"BENCH_PATHS": str(write_lines(bench.files / "paths.txt", paths)), "BENCH_TOKENS": str(bench.tokens_file)},
    )
    saturated = await run_wrk(label, url, "queries.lua", env, seconds, plan.connections)
    fixed = await run_wrk(label, url, "queries.lua", env, seconds, plan.connections, plan.query_rate)
    return {"saturation": figures(saturated), "fixed_rate": figures(fixed)}


async def start_bare(bench: Bench, bodies: dict[str, str]) -> asyncio.subprocess.Process:
    bodies_file = bench.files / "bodies.json"
    bodies_file.write_text(json.dumps(bodies))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.bare",
        "--port",
        str(BARE_PORT),
        "--bodies",
        str(bodies_file),
        stdout=asyncio.subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient() as http:
        while True:
            try:
                await http.get(f"http://127.0.0.1:{BARE_PORT}/bare/search")
                return process
            except httpx.TransportError:
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the bare endpoint did not start on port {BARE_PORT}") from None
                await asyncio.sleep(0.2)


async def run(bench: Bench) -> dict[str, dict[str, object]]:
    plan, paths = bench.plan, query_paths(bench)
    headers = {"Authorization": f"Bearer {bench.user_tokens[0]}"}
    bodies = {}
    for name, choices in paths.items():
        reply = await bench.http.get(choices[0], headers=headers)
        bodies[name.replace(" ", "-")] = reply.raise_for_status().text
    results: dict[str, dict[str, object]] = {}
    async with bench.stage("4 Queries", len(paths) * 2 * (plan.query_seconds + plan.bare_seconds)) as say:
        bare = await start_bare(bench, bodies)
        try:
            for name, choices in paths.items():
                say(name)
                gateway = await measure(bench, name, bench.addresses.gateway, choices, plan.query_seconds)
                say(f"{name}, bare endpoint")
                ceiling = await measure(
                    bench,
                    f"{name} (bare)",
                    f"http://127.0.0.1:{BARE_PORT}",
                    [f"/bare/{name.replace(' ', '-')}"],
                    plan.bare_seconds,
                )
                results[name] = {
                    "gateway": gateway,
                    "bare": ceiling,
                    "reply_bytes": len(bodies[name.replace(" ", "-")].encode()),
                }
        finally:
            bare.terminate()
            await bare.wait()
    return results
