"""Measured vs predicted latency distributions: one panel per trace, two empirical CDFs."""

from __future__ import annotations

import math
import re

from matplotlib.figure import Figure

PANEL_CHARACTERS = 40
"""About what fits on one line above a 4.2-inch panel at 9 points."""


def _ecdf(values: list[float]) -> tuple[list[float], list[float]]:
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]


def _wrap(text: str, width: int, lines: int = 2) -> str:
    """`text` on at most `lines` lines of about `width` characters, broken after `_`, `-`, `.`,
    `/` or a space (trace names have few spaces); what does not fit ends in an ellipsis."""
    pieces = re.findall(r"[^_\-./ ]*[_\-./ ]?", text)
    out = [""]
    for piece in filter(None, pieces):
        if out[-1] and len(out[-1]) + len(piece) > width:
            out.append("")
        out[-1] += piece
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 1] + "…"
    out = [line.rstrip() if len(line) <= width else line[: width - 1] + "…" for line in out]
    return "\n".join(out)


def latency_cdfs(panels: list[tuple[str, list[float], list[float]]], title: str = "") -> Figure:
    """panels: (title, measured latencies ms, simulated latencies ms); `title` names what the
    figure shows as a whole."""
    count = max(1, len(panels))
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(4.2 * columns, 3.2 * rows + 0.4), layout="constrained")
    if title:
        figure.suptitle(_wrap(title, PANEL_CHARACTERS * columns + 10), fontsize=10)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (name, measured, simulated) in zip(axes.flat, panels):
        if simulated:
            ax.step(*_ecdf(simulated), where="post", label="simulated", color="tab:blue")
        if measured:
            ax.step(*_ecdf(measured), where="post", label="measured", color="tab:orange")
        ax.set_title(_wrap(name, PANEL_CHARACTERS), fontsize=9)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("fraction")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return figure
