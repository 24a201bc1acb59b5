"""The end of a run: one summary table (on the terminal and as Markdown), the JSON with every
figure, and the charts beside it."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.table import Table

from bench.shop import PROJECTIONS
from bench.stats import ratio

COLUMNS = ("stage", "figure", "measured", "raw ceiling (same run)", "ratio", "target")
Row = tuple[str, str, str, str, str, str]


def _ms(latency: dict[str, float], *keys: str) -> str:
    return ", ".join(f"{k.removesuffix('_ms')} {latency[k]:,.0f} ms" for k in keys)


def _pct(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.0%}"


def rows(results: dict) -> list[Row]:
    found: list[Row] = []
    if commands := results.get("commands"):
        raw = commands["raw_pipeline"]
        ceiling = f"{raw['rate']:,.0f}/s ({_ms(raw['latency'], 'p50_ms', 'p99_ms')})"
        for key, name in (
            ("many_products", "PlaceOrder, many products"),
            ("hot_product", "PlaceOrder, one hot product"),
        ):
            run = commands[key]
            rejected = sum(n for status, n in run["statuses"].items() if status != "201")
            measured = f"{run['rate']:,.0f}/s ({_ms(run['latency_ms'], 'p50_ms', 'p99_ms')})"
            measured += f", {rejected:,} not 201" if rejected else ""
            found.append(
                ("1 commands", name, measured, ceiling, _pct(ratio(run["rate"], raw["rate"])), ">= 600/s and >= 50%")
            )
    for level in results.get("lag", []):
        for projection in (*PROJECTIONS, "all three"):
            lag = level["visible_after"][projection]
            if lag["count"] == 0:
                continue
            name = f"visible after reply at {level['fraction']:.0%} ({level['rate']:,.0f}/s), {projection}"
            if level.get("bench_nice") is None:  # bench.lag.undisturbed could not raise it
                name += " (the bench at the default CPU weight)"
            target = "p99 <= 50 ms" if level["fraction"] == 0.5 and projection != "all three" else ""
            found.append(("2 lag", name, _ms(lag, "p50_ms", "p99_ms", "max_ms"), "", "", target))
    if rebuild := results.get("rebuild"):
        bare = rebuild["bare_consumer"]
        stores = {
            "analytics": ("raw Redis", rebuild["raw_redis"]),
            "catalog": ("raw _bulk", rebuild["raw_bulk_products"]),
            "order-list": ("raw _bulk", rebuild["raw_bulk_orders"]),
        }
        found.append(("3 rebuild", "bare JetStream consumer", _events(bare), "", "", ""))
        for projector in ("analytics", "catalog", "order-list"):
            outcome = rebuild[projector]
            store, raw = stores[projector]
            ceiling = f"bare consumer {bare['rate']:,.0f}/s; {store} {_events(raw)}"
            versus = bare if projector == "analytics" else raw
            target = ">= 50% of bare consumer" if projector == "analytics" else ">= 50% of raw _bulk"
            found.append(
                (
                    "3 rebuild",
                    f"rebuild {projector}",
                    _events(outcome),
                    ceiling,
                    _pct(ratio(outcome["rate"], versus["rate"])),
                    target,
                )
            )
    for name, query in results.get("queries", {}).items():
        gateway, bare = query["gateway"], query["bare"]
        for mode, label in (("saturation", "saturation"), ("fixed_rate", "at a fixed rate")):
            g, b = gateway[mode], bare[mode]
            offered = f"{g['offered_rate']:,.0f}/s offered: " if g["offered_rate"] else ""
            errors = sum(g["errors"].values())
            measured = f"{offered}{g['rate']:,.0f}/s ({_ms(g['latency_ms'], 'p50_ms', 'p99_ms')})"
            measured += f", {errors:,} errors" if errors else ""
            ceiling = f"{b['rate']:,.0f}/s ({_ms(b['latency_ms'], 'p50_ms', 'p99_ms')})"
            target = ""
            if name == "product detail":
                target = ">= 40% of bare" if mode == "saturation" else "p99 <= 20 ms at 500/s"
            shown = _pct(ratio(g["rate"], b["rate"])) if mode == "saturation" else ""
            found.append(("4 queries", f"{name}, {label}", measured, ceiling, shown, target))
    if scale := results.get("scale"):
        for projector in ("catalog", "analytics"):
            figures = scale[projector]
            for kind, label in (("live", "catching up a backlog"), ("rebuild", "rebuild")):
                one, two = figures[1][kind], figures[2][kind]
                name = f"{projector}, {label}, {scale['partitions']} partitions: 1 -> 2 processes"
                measured = f"{_events(one)} -> {_events(two)}"
                found.append(("6 scale-out", name, measured, "", f"x{figures[f'{kind}_speed_up']:.2f}", ""))
    if commands:
        memory = results.get("memory_mb_at_end", {})
        for process, seconds in sorted(commands["cpu_seconds_per_1000_orders"].items(), key=lambda x: -x[1]):
            rss = f", {memory[process]:,.0f} MB at end" if process in memory else ""
            found.append(("5 resources", process, f"{seconds:,.1f} CPU s per 1,000 orders{rss}", "", "", ""))
    return found


def _events(figures: dict) -> str:
    text = f"{figures['rate']:,.0f} events/s"
    if figures.get("partial"):
        text += f" (partial: {figures['events']:,} in {figures['seconds']:.0f} s)"
    return text


def table(found: list[Row], title: str) -> Table:
    shown = Table(*COLUMNS, title=title, show_lines=False)
    stage = None
    for row in found:
        if stage is not None and row[0] != stage:
            shown.add_section()
        stage = row[0]
        shown.add_row(*row)
    return shown


def markdown(found: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in found]
    return "\n".join(lines) + "\n"


def write(results: dict, found: list[Row], stem: Path) -> list[Path]:
    """The JSON, the Markdown table and the charts, named `<stem>.json`, `<stem>.md`, `<stem>-*.png`."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    written[0].write_text(json.dumps(results, indent=2, default=str))
    written[1].write_text(markdown(found))
    for name, draw in (("latency", latency_chart), ("throughput", throughput_chart), ("rebuild", rebuild_chart)):
        figure = draw(results)
        if figure is not None:
            path = stem.parent / f"{stem.name}-{name}.png"
            figure.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(path)
    return written


def _bars(axis, groups: dict[str, dict[str, float]], keys: tuple[str, ...], title: str) -> None:
    names = list(groups)
    width = 0.8 / len(keys)
    for n, key in enumerate(keys):
        axis.bar(
            [i + n * width for i in range(len(names))],
            [groups[g].get(key, math.nan) for g in names],
            width,
            label=key.removesuffix("_ms"),
        )
    axis.set_xticks(
        [i + width * (len(keys) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right", fontsize=8
    )
    axis.set_yscale("log")
    axis.set_ylabel("ms")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)


def latency_chart(results: dict):
    figure, axes = plt.subplots(1, 3, figsize=(17, 5))
    keys = ("p50_ms", "p90_ms", "p99_ms")
    if commands := results.get("commands"):
        groups = {
            "many products": commands["many_products"]["latency_ms"],
            "hot product": commands["hot_product"]["latency_ms"],
            "raw pipeline": commands["raw_pipeline"]["latency"],
        }
        groups |= {f"at {lv['fraction']:.0%}": lv["reply_latency_ms"] for lv in results.get("lag", [])}
        _bars(axes[0], groups, keys, "1 PlaceOrder reply latency")
    if results.get("lag"):
        groups = {f"{p} at {lv['fraction']:.0%}": lv["visible_after"][p] for lv in results["lag"] for p in PROJECTIONS}
        _bars(axes[1], groups, keys, "2 visible after the reply")
    if queries := results.get("queries"):
        groups = {}
        for name, query in queries.items():
            groups[f"{name}"] = query["gateway"]["saturation"]["latency_ms"]
            groups[f"{name} at rate"] = query["gateway"]["fixed_rate"]["latency_ms"]
            groups[f"{name} bare"] = query["bare"]["saturation"]["latency_ms"]
        _bars(axes[2], groups, keys, "4 query latency (saturation, fixed rate, bare)")
    figure.tight_layout()
    return figure


def throughput_chart(results: dict):
    commands, lag, queries = results.get("commands"), results.get("lag", []), results.get("queries", {})
    if not commands and not queries:
        return None
    figure, (orders, reads) = plt.subplots(1, 2, figsize=(13, 5))
    if commands:
        offered = [lv["offered_rate"] for lv in lag]
        achieved = [lv["rate"] for lv in lag]
        saturation = commands["many_products"]["rate"]
        orders.plot(offered, achieved, "o-", label="gateway at a fixed rate")
        orders.axhline(saturation, color="C1", linestyle="--", label=f"gateway at saturation ({saturation:,.0f}/s)")
        raw = commands["raw_pipeline"]["rate"]
        orders.axhline(raw, color="C2", linestyle=":", label=f"raw pipeline ({raw:,.0f}/s)")
        top = max([*offered, saturation, 1.0]) * 1.1
        orders.plot([0, top], [0, top], color="grey", linewidth=0.5)
        orders.set_xlabel("offered orders/s")
        orders.set_ylabel("placed orders/s")
        orders.set_title("PlaceOrder: throughput against offered load", fontsize=10)
        orders.legend(fontsize=8)
    if queries:
        names = list(queries)
        series = {
            "gateway, saturation": [queries[n]["gateway"]["saturation"]["rate"] for n in names],
            "gateway, fixed rate": [queries[n]["gateway"]["fixed_rate"]["rate"] for n in names],
            "bare, saturation": [queries[n]["bare"]["saturation"]["rate"] for n in names],
        }
        for n, (label, values) in enumerate(series.items()):
            reads.bar([i + n * 0.27 for i in range(len(names))], values, 0.27, label=label)
        rate = next(iter(queries.values()))["gateway"]["fixed_rate"]["offered_rate"]
        reads.axhline(rate, color="grey", linestyle="--", label=f"offered {rate:,.0f}/s")
        reads.set_xticks([i + 0.27 for i in range(len(names))], names, fontsize=8)
        reads.set_yscale("log")
        reads.set_ylabel("requests/s")
        reads.set_title("queries: achieved requests/s", fontsize=10)
        reads.legend(fontsize=8)
    figure.tight_layout()
    return figure


def rebuild_chart(results: dict):
    if not (rebuild := results.get("rebuild")):
        return None
    figure, axis = plt.subplots(figsize=(9, 5))
    for name in ("bare_consumer", "raw_redis", "raw_bulk_products", "raw_bulk_orders"):
        series = rebuild[name]["series"]
        axis.plot([s[0] for s in series], [s[1] for s in series], linestyle=":", label=name.replace("_", " "))
    for projector in ("analytics", "catalog", "order-list"):
        series = rebuild[projector]["series"]
        axis.plot([s[0] for s in series], [s[1] for s in series], label=f"rebuild {projector}")
    axis.axhline(rebuild["stream_events"], color="grey", linewidth=0.5)
    axis.set_xlabel("seconds")
    axis.set_ylabel("events of the stream done")
    axis.set_title(f"rebuild progress over a stream of {rebuild['stream_events']:,} events", fontsize=10)
    axis.legend(fontsize=8)
    return figure
