"""Stage 2: how long after its reply an order becomes visible in each read model, at fractions of
the throughput stage 1 found. wrk places orders at a fixed rate (bench/wrk/pace.lua) and writes each
reply's `position` with the moment it arrived; /v1/sync (followed since the start of the run, see
`bench.shop.SyncFollower`) tells when each projection announced that position or a later one. Both
moments are on CLOCK_MONOTONIC. A projection that announced the position before the reply arrived
counts as 0 ms."""

from bench.load import run_wrk
from bench.run import Bench
from bench.shop import PROJECTIONS
from bench.stats import latency_summary


async def run(bench: Bench, max_rate: float) -> list[dict[str, object]]:
    plan = bench.plan
    levels = []
    async with bench.stage("2 Lag", len(plan.lag_fractions) * (plan.lag_seconds + 5)) as say:
        for fraction in plan.lag_fractions:
            rate = max(1.0, fraction * max_rate)
            say(f"{fraction:.0%} of {max_rate:.0f}/s")
            replies_file = bench.files / f"replies-{fraction}.txt"
            result = await run_wrk(
                f"PlaceOrder at {fraction:.0%}",
                bench.addresses.gateway,
                "orders.lua",
                bench.order_env("products.txt", plan.items, replies_file),
                plan.lag_seconds,
                plan.connections,
                rate,
            )
            replies = [(int(p), float(t)) for p, t in (line.split() for line in replies_file.read_text().splitlines())]
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
                    "visible_after": {p: latency_summary(samples) for p, samples in lags.items()},
                }
            )
    return levels
