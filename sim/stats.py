"""Statistics: tallies (latencies), time-weighted levels (pool occupancy, queue depth), and
confidence intervals over replications.

Percentiles interpolate linearly between order statistics (numpy's default), the same rule the
lab's summaries use, so simulated and measured percentiles mean the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom; beyond 30 the normal value is
# within 2% and is used.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between order statistics."""
    if not values:
        return math.nan
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 1.96


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (nan with fewer than two)."""
    n = len(values)
    m = mean(values)
    if n < 2:
        return m, math.nan
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, t95(n - 1) * math.sqrt(var / n)


def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    if not a or not b:
        return math.nan
    xs, ys = sorted(a), sorted(b)
    i = j = 0
    gap = 0.0
    while i < len(xs) and j < len(ys):
        x = min(xs[i], ys[j])
        while i < len(xs) and xs[i] <= x:
            i += 1
        while j < len(ys) and ys[j] <= x:
            j += 1
        gap = max(gap, abs(i / len(xs) - j / len(ys)))
    return gap


def wasserstein(a: Sequence[float], b: Sequence[float], points: int = 1000) -> float:
    """First Wasserstein distance (earth mover's): the mean gap between the two quantile
    functions, in the values' unit."""
    if not a or not b:
        return math.nan
    xs, ys = sorted(a), sorted(b)
    total = 0.0
    for i in range(points):
        q = (i + 0.5) / points
        total += abs(
            xs[min(int(q * len(xs)), len(xs) - 1)] - ys[min(int(q * len(ys)), len(ys) - 1)]
        )
    return total / points


class Level:
    """A time-weighted level (e.g. connections in use), updated when it changes."""

    __slots__ = ("value", "since", "area", "start", "peak")

    def __init__(self, value: float = 0.0, now: float = 0.0):
        self.value = value
        self.since = now
        self.start = now
        self.area = 0.0
        self.peak = value

    def set(self, now: float, value: float) -> None:
        self.area += self.value * (now - self.since)
        self.since = now
        self.value = value
        if value > self.peak:
            self.peak = value

    def reset(self, now: float) -> None:
        """Start averaging afresh from `now` (after a warm-up)."""
        self.area = 0.0
        self.since = now
        self.start = now
        self.peak = self.value

    def mean(self, now: float) -> float:
        span = now - self.start
        if span <= 0:
            return self.value
        return (self.area + self.value * (now - self.since)) / span


def json_safe(value):
    """`value` with every float that is not finite replaced by None (JSON has no NaN), through
    dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
