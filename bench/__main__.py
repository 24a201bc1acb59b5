"""`./justw bench [--quick]`: every speed figure of the running shop beside its raw ceiling on the
same machine, measured in the same run (issue 7). Stages, each in its module:

1. commands: PlaceOrder at saturation through the gateway, beside the raw pipeline ceiling;
2. lag: reply -> visible in each read model at 25/50/90% of the throughput stage 1 found;
4. queries: product detail, list, search, my orders, beside a bare endpoint with the same bytes
   (run before stage 3, whose projector restarts and scratch indexes should not disturb it);
3. rebuild: each projector's full rebuild over a stream of >= 200,000 events, beside a bare
   JetStream consumer, raw OpenSearch `_bulk` and raw Redis pipelines (`bench.ceilings`);
5. resources: CPU seconds per process per 1,000 orders of stage 1 and memory at the end;
6. scale-out: catalog and analytics with 8 partitions, with 1 and with 2 processes: the rate at which
   they pass a backlog, and their rebuilds (run last: it restarts those projectors).

Writes bench/results/<UTC timestamp>.json (every figure), .md (the summary table) and -*.png."""

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
from rich.console import Console

from bench import commands, lag, queries, rebuilds, report, scale, system
from bench.run import Bench, Plan
from bench.shop import Addresses

RESULTS = Path(__file__).parent / "results"


async def versions(bench: Bench) -> dict[str, str]:
    connection = await asyncpg.connect(bench.addresses.database)
    try:
        postgres = await connection.fetchval("show server_version")
    finally:
        await connection.close()
    return {
        "nats": str(bench.nc.connected_server_version),
        "postgres": postgres,
        "redis": (await bench.redis.info("server"))["redis_version"],
        "opensearch": (await bench.opensearch.info())["version"]["number"],
    }


async def main(quick: bool, stream_only: bool, stage: str | None) -> None:
    plan = Plan.quick() if quick else Plan()
    started = datetime.now(UTC)
    results: dict[str, object] = {
        "mode": "quick" if quick else "full",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": system.machine(),
        "plan": msgspec.to_builtins(plan),
    }
    console = Console()
    if not console.is_terminal:
        console.width = 200  # the whole table on one line a row in logs
    async with Bench.open(plan, Addresses()) as bench:
        results["versions"] = await versions(bench)
        if stage is None:  # the quick plan asks for none: never made there
            results["stream"] = await rebuilds.ensure_stream(bench)
        if stream_only:
            console.print(f"stream: {results['stream']}")
            return
        if stage == "rebuild":
            results["rebuild"] = await rebuilds.run(bench)
            console.print(report.table(report.rows(results), "rebuild stage only"))
            return
        if stage == "scale":
            await bench.make_products()
            results["scale"] = await scale.run(bench)
            console.print(report.table(report.rows(results), "scale-out stage only"))
            return
        await bench.make_products()
        results["catch_up_before_seconds"] = await bench.catch_up()
        results["commands"] = await commands.run(bench)
        if stage in ("commands", "lag"):
            if stage == "lag":  # at fractions of what the commands stage found
                results["lag"] = await lag.run(bench, results["commands"]["many_products"]["rate"])
            results["load_average_at_stage_start"] = bench.load_averages
            console.print(report.table(report.rows(results), f"{stage} stage only"))
            console.print(f"load average (1, 5, 15 min) at the stage's start: {bench.load_averages}")
            return
        results["lag"] = await lag.run(bench, results["commands"]["many_products"]["rate"])
        results["queries"] = await queries.run(bench)
        results["rebuild"] = await rebuilds.run(bench)
        results["memory_mb_at_end"] = system.memory_mb(system.process_ids())
        results["scale"] = await scale.run(bench)
        results["load_average_at_stage_start"] = bench.load_averages
    results["seconds"] = (datetime.now(UTC) - started).total_seconds()
    found = report.rows(results)
    title = f"{results['mode']} run of {started:%Y-%m-%d %H:%M} UTC, {results['seconds'] / 60:.1f} min"
    console.print(report.table(found, title))
    for path in report.write(results, found, RESULTS / started.strftime("%Y%m%dT%H%M%SZ")):
        console.print(f"wrote {path.relative_to(system.ROOT)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="just bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short measurements (about a minute), for trying a change")
    parser.add_argument("--stream-only", action="store_true", help="only make the stream the rebuilds replay (once)")
    parser.add_argument(
        "--stage",
        choices=["commands", "lag", "rebuild", "scale"],
        help="run only this stage (lag runs the commands stage first; no files written)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.stream_only, args.stage))
