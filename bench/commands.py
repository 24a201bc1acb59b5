"""Stage 1: PlaceOrder at saturation through the gateway (wrk, bench/wrk/orders.lua), many users
ordering many products and then one hot product, beside the raw pipeline ceiling
(`bench.ceilings.raw_pipeline`). Also stage 5's CPU figures: CPU seconds of every process (from
/proc) from the start of the many-products load until the projections have passed its last
event, per 1,000 orders it placed."""

from bench import system
from bench.ceilings import raw_pipeline
from bench.load import WrkResult, run_wrk
from bench.run import Bench

COMMAND_POOL_SIZE = 20  # the command-service's DATABASE_POOL_SIZE default


async def run(bench: Bench) -> dict[str, object]:
    plan = bench.plan
    seconds = plan.command_seconds + plan.hot_seconds + plan.raw_pipeline_seconds + 20
    async with bench.stage("1 Commands", seconds) as say:
        pids = system.process_ids()
        cpu_before = system.cpu_seconds(pids)
        say("many products")
        many = await run_wrk(
            "PlaceOrder, many products",
            bench.addresses.gateway,
            "orders.lua",
            bench.order_env("products.txt", plan.items),
            plan.command_seconds,
            plan.connections,
        )
        say("projections catching up")
        caught_up = await bench.catch_up()
        cpu_after = system.cpu_seconds(pids)
        say("one hot product")
        hot = await run_wrk(
            "PlaceOrder, one hot product",
            bench.addresses.gateway,
            "orders.lua",
            bench.order_env("hot.txt", 1),
            plan.hot_seconds,
            plan.connections,
        )
        say("projections catching up")
        await bench.catch_up()
        say("raw pipeline")
        raw = await raw_pipeline(
            bench.addresses.database,
            bench.nc,
            plan.raw_pipeline_seconds,
            plan.connections,
            COMMAND_POOL_SIZE,
            plan.items,
        )
    placed = many.statuses.get("201", 0)
    per_thousand = {name: (cpu_after[name] - cpu_before[name]) * 1000 / placed for name in cpu_after} if placed else {}
    return {
        "many_products": summary(many),
        "hot_product": summary(hot),
        "raw_pipeline": raw,
        "catch_up_seconds": caught_up,
        "cpu_seconds_per_1000_orders": per_thousand,
        "orders_for_cpu": placed,
    }


def summary(result: WrkResult) -> dict[str, object]:
    placed = result.statuses.get("201", 0)
    return {
        "orders": placed,
        "rate": placed / result.seconds,
        "latency_ms": result.latency_ms,
        "statuses": result.statuses,
        "errors": result.errors,
        "seconds": result.seconds,
        "connections": result.connections,
    }
