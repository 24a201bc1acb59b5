"""The benchmark's helpers: percentiles, py-spy's collapsed stacks, the lag stage's quiet instrument."""

import gc
import math

from bench.lag import autogroup_nice, undisturbed
from bench.profile import top_entries
from bench.stats import latency_summary, percentile, ratio


def test_percentile_interpolates_between_closest_ranks():
    samples = [float(n) for n in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == 50.5
    assert percentile(samples, 99) == 99.01
    assert percentile(samples, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_latency_summary_is_in_milliseconds():
    summary = latency_summary([0.001, 0.002, 0.003])
    assert summary["count"] == 3
    assert summary["p50_ms"] == 2.0
    assert summary["max_ms"] == 3.0


def test_ratio_of_nothing_is_not_a_number():
    assert ratio(1, 4) == 0.25
    assert math.isnan(ratio(1, 0))


def test_top_entries_count_self_and_the_shops_own_inclusive_time():
    collapsed = "\n".join(
        [
            "main (shop/ops.py:1);handle (gateway/orders.py:9);encode (msgspec.py:1) 6",
            "main (shop/ops.py:1);handle (gateway/orders.py:9) 2",
            "main (shop/ops.py:1);select (selectors.py:468) 2",
        ]
    )
    total, own, inclusive = top_entries(collapsed, 2)
    assert total == 10
    assert own == [("encode (msgspec.py:1)", 6), ("handle (gateway/orders.py:9)", 2)]
    assert inclusive == [("handle (gateway/orders.py:9)", 8)]  # main is in every sample: left out


def test_undisturbed_holds_the_gc_and_sets_the_weight_only_inside(monkeypatch):
    monkeypatch.setenv("BENCH_NICE", "3")  # a lower weight: allowed without CAP_SYS_NICE
    before = autogroup_nice()
    assert gc.isenabled()
    with undisturbed() as nice:
        assert not gc.isenabled()
        if before is not None:
            assert nice == 3 and autogroup_nice() == 3
        else:
            assert nice is None  # no autogroup in use here (CI runs in a cgroup): nothing set, the report says so
    assert gc.isenabled()
    assert autogroup_nice() == before


def test_undisturbed_sets_no_weight_where_the_autogroup_file_is_empty(monkeypatch, tmp_path):
    empty = tmp_path / "autogroup"  # what a process in a cgroup of its own reads: the scheduler ignores the nice
    empty.write_text("")
    monkeypatch.setattr("bench.lag.AUTOGROUP", empty)
    assert autogroup_nice() is None
    with undisturbed() as nice:
        assert nice is None and not gc.isenabled()
    assert empty.read_text() == "" and gc.isenabled()
