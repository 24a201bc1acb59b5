"""The benchmark's pure helpers: percentiles and py-spy's collapsed stacks."""

import math

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
