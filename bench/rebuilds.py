"""Stage 3: each projector's full rebuild, through its public ops endpoint (POST /rebuild, GET
/rebuild), next to the raw ceilings of `bench.ceilings`. Also makes the stream it replays, once.

A rebuild is followed for at most `limit` seconds; its rate is the replay's position (its
checkpoint, as GET /rebuild reports it) over the time it took. One that has not finished by then is
marked partial and cancelled (DELETE /rebuild), which deletes the generation it had been filling."""

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.ceilings import bare_consumer, raw_bulk, raw_redis, stream_event_decoder
from bench.load import run_wrk
from bench.run import Bench
from bench.shop import Addresses, create_products, token, write_lines
from bench.system import RUN_DIR
from shop.read_models import ops_headers


async def rebuild(addresses: Addresses, projector: str, limit: float, url: str | None = None) -> dict[str, object]:
    """`url`: the process that leads (runs rebuilds) when the projector runs several."""
    base_url = url or addresses.projector(projector)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=ops_headers()) as http:
        reply = await http.post("/rebuild")
        if reply.status_code != 202:
            raise RuntimeError(f"{projector} refused the rebuild: {reply.status_code} {reply.text}")
        started = time.monotonic()
        series: list[tuple[float, int, int, str]] = []  # (seconds, position, target, state)
        while True:
            status = (await http.get("/rebuild")).json()
            series.append((time.monotonic() - started, status["position"], status["target"], status["state"]))
            if status["state"] in ("done", "failed") or series[-1][0] > limit:
                break
            await asyncio.sleep(0.5)
    replaying = [s for s in series if s[3] == "replaying"] or series
    seconds, position = replaying[-1][0], replaying[-1][1]
    return {
        "state": status["state"],
        "partial": status["state"] != "done",
        "error": status.get("error"),
        "generation": status["generation"],
        "events": position,
        "target": status["target"],
        "seconds": seconds,
        "rate": position / seconds if seconds else 0.0,
        "series": series,
    }


async def ensure_stream(bench: Bench) -> dict[str, object] | None:
    """The stream the rebuilds replay: at least `plan.stream_events` events, placed once through the
    real command path (wrk with orders.lua: many users, three products an order) and kept where
    the shop keeps it, under .run/. Returns how it was made (recorded in .run/bench/stream.json)."""
    target, have = bench.plan.stream_events, await bench.last_position()
    if have >= target:
        return stream_record(RUN_DIR)
    tokens = [token(bench.addresses.jwt_secret, f"bench-stream-user-{n}") for n in range(2000)]
    task = bench.progress.add_task(f"0 Stream of {target:,} events (once)", total=target, completed=have)
    products = await create_products(bench.http, bench.admin, "stream", 1000, 1_000_000_000)
    env = {
        "BENCH_TOKENS": str(write_lines(bench.files / "stream-tokens.txt", tokens)),
        "BENCH_PRODUCTS": str(write_lines(bench.files / "stream-products.txt", products)),
        "BENCH_ITEMS": "3",
    }
    stop = asyncio.Event()
    started = time.monotonic()
    load = asyncio.create_task(
        run_wrk("stream", bench.addresses.gateway, "orders.lua", env, 24 * 3600, bench.plan.connections, stop=stop)
    )
    while (position := await bench.last_position()) < target and not load.done():
        bench.progress.update(task, completed=position)
        await asyncio.sleep(2)
    stop.set()
    result = await load
    placed = time.monotonic() - started
    bench.progress.update(task, completed=target, description="0 Stream: projections catching up")
    await bench.sync.caught_up(await bench.last_position(), 3 * 3600)
    record = {
        "events": await bench.last_position(),
        "orders": result.statuses.get("201", 0),
        "placing_seconds": round(placed, 1),
        "projections_caught_up_after_seconds": round(time.monotonic() - started, 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = RUN_DIR / "bench" / "stream.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    return record


def stream_record(run_dir: Path) -> dict[str, object] | None:
    path = run_dir / "bench" / "stream.json"
    return json.loads(path.read_text()) if path.exists() else None


async def run(bench: Bench) -> dict[str, object]:
    plan = bench.plan
    async with bench.stage("3 Rebuild", 3 * (plan.rebuild_limit + 10) + 3 * plan.probe_limit) as say:
        say("bare JetStream consumer")
        bare, read = await bare_consumer(bench.nc, plan.probe_limit)
        events = [(seq, stream_event_decoder.decode(data)) for seq, data in read]
        del read
        only_events = [event for _, event in events]
        results: dict[str, object] = {"stream_events": bare["stream_events"], "bare_consumer": bare}
        say("raw _bulk of the product documents")
        results["raw_bulk_products"] = await raw_bulk(
            bench.opensearch, "products", "product", only_events, plan.probe_limit
        )
        say("raw _bulk of the order documents")
        results["raw_bulk_orders"] = await raw_bulk(bench.opensearch, "orders", "order", only_events, plan.probe_limit)
        say("raw Redis counters")
        results["raw_redis"] = await raw_redis(bench.redis, events, plan.probe_limit)
        del events, only_events
        for projector in ("analytics", "catalog", "order-list"):
            say(f"rebuild {projector}")
            outcome = await rebuild(bench.addresses, projector, plan.rebuild_limit)
            if outcome["partial"]:
                say(f"cancelling the rebuild of {projector}")
                async with httpx.AsyncClient(
                    base_url=bench.addresses.projector(projector), timeout=60, headers=ops_headers()
                ) as http:
                    outcome["cancelled"] = (await http.delete("/rebuild")).status_code == 200
            results[projector] = outcome
    return results
