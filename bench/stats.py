"""Small pure helpers for the figures: percentiles, rates and ratios."""

import math


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0..100) of `samples`, linearly interpolated between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds, and how many samples."""
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


def ratio(value: float, ceiling: float) -> float:
    return value / ceiling if ceiling else math.nan
