"""Stage 2: how long after its reply an order becomes visible in each read model, at fractions of
the throughput stage 1 found. wrk places orders at a fixed rate (bench/wrk/pace.lua) and writes each
reply's `position` with the moment it arrived; /v1/sync (followed since the start of the run, see
`bench.shop.SyncFollower`) tells when each projection announced that position or a later one. Both
moments are on CLOCK_MONOTONIC. A projection that announced the position before the reply arrived
counts as 0 ms.

The bench is the instrument here: a pause of its own between a position's arrival and its time stamp
would count as lag. So while the levels run, its cyclic GC waits (a full collection of what the run
holds took ~290 ms), and its session, with wrk in it, gets OpenSearch's CPU weight (autogroup nice
BENCH_NICE, -10): on two cores it otherwise waited up to 75 ms for the CPU, as a client on a machine
of its own would not. Both are restored afterwards; the weight needs CAP_SYS_NICE (the level says
whether it was set)."""

import contextlib
import gc
import os
from collections.abc import Iterator
from pathlib import Path

from bench.load import run_wrk
from bench.run import Bench
from bench.shop import PROJECTIONS
from bench.stats import latency_summary

AUTOGROUP = Path("/proc/self/autogroup")


def autogroup_nice() -> int | None:
    """The nice of this process's autogroup: "/autogroup-123 nice 0". None where the scheduler does not use it:
    the kernel has no autogroups, or the process sits in a cgroup of its own (the file is then empty)."""
    try:
        words = AUTOGROUP.read_text().split()
    except OSError:
        return None
    return int(words[-1]) if len(words) == 3 else None


@contextlib.contextmanager
def undisturbed() -> Iterator[int | None]:
    """No cyclic GC and the raised CPU weight while the block runs; yields the autogroup nice set (None: not
    set, the scheduler uses no autogroup here or the process lacks CAP_SYS_NICE)."""
    nice = int(os.environ.get("BENCH_NICE", "-10"))
    before = autogroup_nice()
    if before is not None:
        try:
            AUTOGROUP.write_text(str(nice))
        except OSError:
            before = None
    gc.collect()
    gc.disable()
    try:
        yield None if before is None else nice
    finally:
        gc.enable()
        if before is not None:
            with contextlib.suppress(OSError):
                AUTOGROUP.write_text(str(before))


async def run(bench: Bench, max_rate: float) -> list[dict[str, object]]:
    plan = bench.plan
    levels = []
    async with bench.stage("2 Lag", len(plan.lag_fractions) * (plan.lag_seconds + 5)) as say:
        for fraction in plan.lag_fractions:
            rate = max(1.0, fraction * max_rate)
            say(f"{fraction:.0%} of {max_rate:.0f}/s")
            replies_file = bench.files / f"replies-{fraction}.txt"
            with undisturbed() as bench_nice:
                result = await run_wrk(
                    f"PlaceOrder at {fraction:.0%}",
                    bench.addresses.gateway,
                    "orders.lua",
                    bench.order_env("products.txt", plan.items, replies_file),
                    plan.lag_seconds,
                    plan.connections,
                    rate,
                )
                replies = [(int(p), float(t)) for p, t in (ln.split() for ln in replies_file.read_text().splitlines())]
                caught_up = await bench.sync.caught_up(max((p for p, _ in replies), default=0), plan.catch_up_limit)
            lags: dict[str, list[float]] = {p: [] for p in (*PROJECTIONS, "all three")}
            unseen = 0
            for position, replied in replies:
                seen = [bench.sync.visible_at(p, position) for p in PROJECTIONS]
                if None in seen:
                    unseen += 1
                    continue
                for projection, at in zip(PROJECTIONS, seen, strict=True):
                    lags[projection].append(max(0.0, at - replied))
                lags["all three"].append(max(0.0, max(seen) - replied))
            levels.append(
                {
                    "fraction": fraction,
                    "offered_rate": rate,
                    "rate": result.statuses.get("201", 0) / result.seconds,
                    "reply_latency_ms": result.latency_ms,
                    "statuses": result.statuses,
                    "orders": len(replies),
                    "not_visible": unseen,
                    "caught_up": caught_up,
                    "bench_nice": bench_nice,
                    "visible_after": {p: latency_summary(samples) for p, samples in lags.items()},
                }
            )
    return levels
