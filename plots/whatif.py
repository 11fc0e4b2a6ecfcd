"""What-if figures, each from result rows (`durosim.experiments.compare` and the RTT sweep),
never simulating."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

PART_COLOURS = {
    "network": "#4c72b0",
    "server": "#8172b2",
    "pool_wait": "#c44e52",
    "poll_wait": "#dd8452",
    "slot_busy": "#937860",
    "client_backoff": "#da8bc3",
    "activity": "#55a868",
    "overhead": "#8c8c8c",
}


def _half_widths(rows: list[dict], stat: str) -> list[float]:
    """Each row's 95% CI half-width of a latency statistic; NaN (no error bar) where there is
    none, as with one replication or no completions."""
    return [math.nan if (ci := r.get("latency_ci_ms", {}).get(stat)) is None else ci for r in rows]


def options_side_by_side(result: dict) -> Figure:
    """Latency (p50 bars with their 95% confidence intervals, p95 and p99 marks) and throughput
    per option, one scenario."""
    rows = result["rows"]
    names = [r["option"] for r in rows]
    figure = Figure(figsize=(max(6.0, 0.9 * len(rows) + 3), 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    xs = range(len(rows))
    p50 = [r["latency_ms"]["p50"] or 0 for r in rows]
    # grey error bars, so that their caps do not read as the black p95 marks
    top.bar(xs, p50, yerr=_half_widths(rows, "p50"), color="#4c72b0", capsize=3,
            error_kw={"ecolor": "0.45", "lw": 1}, label="p50 (95% CI)")  # fmt: skip
    top.scatter(xs, [r["latency_ms"]["p95"] or 0 for r in rows], color="k", marker="_", s=300,
                label="p95", zorder=3)  # fmt: skip
    top.scatter(xs, [r["latency_ms"]["p99"] or 0 for r in rows], color="#c44e52", marker="_",
                s=300, label="p99", zorder=3)  # fmt: skip
    top.set_ylabel("latency (ms)")
    top.legend(fontsize=8)
    top.grid(axis="y", alpha=0.3)
    throughput = [r["throughput_per_s"] for r in rows]
    errors = [r.get("throughput_ci_per_s") or 0 for r in rows]
    bottom.bar(xs, throughput, yerr=errors, color="#55a868", capsize=3)
    bottom.set_ylabel("orchestrations/s")
    bottom.set_xticks(list(xs), names, rotation=30, ha="right", fontsize=8)
    bottom.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{result['scenario']}: what-ifs at RTT {result['rtt_ms']:g} ms", fontsize=10)
    return figure


def breakdown_bars(result: dict) -> Figure:
    """Where the time goes: the mean critical path per option, stacked by part, with the 95%
    confidence interval of the mean latency (the parts add up to it) on top."""
    rows = result["rows"]
    figure = Figure(figsize=(max(6.0, 0.9 * len(rows) + 3), 4.5), layout="constrained")
    ax = figure.subplots()
    bottoms = [0.0] * len(rows)
    for part, colour in PART_COLOURS.items():
        values = [r["breakdown_ms"].get(part, 0.0) for r in rows]
        ax.bar(range(len(rows)), values, bottom=bottoms, color=colour, label=part)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.errorbar(range(len(rows)), bottoms, yerr=_half_widths(rows, "mean"), fmt="none",
                ecolor="k", capsize=3, label="mean (95% CI)")  # fmt: skip
    ax.set_xticks(range(len(rows)), [r["option"] for r in rows], rotation=30, ha="right",
                  fontsize=8)  # fmt: skip
    ax.set_ylabel("mean latency (ms)")
    ax.legend(fontsize=7, ncols=4)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{result['scenario']}: where the time goes at RTT {result['rtt_ms']:g} ms",
                 fontsize=10)  # fmt: skip
    return figure


def versus_rtt(points: list[dict], scenario: str) -> Figure:
    """Latency and throughput of `scenario` against RTT, one line per option.
    points: {"option", "rtt_ms", "latency_ms": {"p50", ...}, "throughput_per_s"}."""
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    figure.suptitle(f"{scenario}: p50 latency and throughput against RTT, per what-if",
                    fontsize=10)  # fmt: skip
    left, right = figure.subplots(1, 2)
    for option in dict.fromkeys(p["option"] for p in points):
        mine = sorted((p for p in points if p["option"] == option), key=lambda p: p["rtt_ms"])
        xs = [p["rtt_ms"] for p in mine]
        left.plot(xs, [p["latency_ms"]["p50"] for p in mine], marker="o", ms=3, label=option)
        right.plot(xs, [p["throughput_per_s"] for p in mine], marker="o", ms=3, label=option)
    for ax, label in ((left, "p50 latency (ms)"), (right, "orchestrations/s")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("RTT to the database (ms)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    right.legend(fontsize=7)
    return figure
