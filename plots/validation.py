"""Measured vs predicted latency distributions: one panel per trace, two empirical CDFs."""

from __future__ import annotations

import math

from matplotlib.figure import Figure


def _ecdf(values: list[float]) -> tuple[list[float], list[float]]:
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]


def latency_cdfs(panels: list[tuple[str, list[float], list[float]]]) -> Figure:
    """panels: (title, measured latencies ms, simulated latencies ms)."""
    count = max(1, len(panels))
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, measured, simulated) in zip(axes.flat, panels):
        if simulated:
            ax.step(*_ecdf(simulated), where="post", label="simulated", color="tab:blue")
        if measured:
            ax.step(*_ecdf(measured), where="post", label="measured", color="tab:orange")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("fraction")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return figure
