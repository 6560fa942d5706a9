"""Median, spread and percentiles of small samples (no numpy: the samples are tiny)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median with its spread: min, max and the relative half-range around the median."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "spread_pct": None,
                "values": []}
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    spread = (hi - lo) / 2 / med * 100 if med else 0.0
    return {"n": len(values), "median": med, "min": lo, "max": hi,
            "spread_pct": round(spread, 1), "values": [round(v, 6) for v in values]}


def latency(values: Sequence[float]) -> dict[str, Any]:
    """p50/p99 (and max) of per-item latencies, in seconds."""
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else math.nan}
