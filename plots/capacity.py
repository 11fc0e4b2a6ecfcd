"""Capacity figures from `durosim.experiments.capacity` results: the throughput-latency curve
with the objective and the knee, and a heat map of the highest sustained rate over two
parameters."""

from __future__ import annotations

from matplotlib.figure import Figure


def throughput_latency(result: dict) -> Figure:
    points = [p for p in result["points"] if p["latency_ms"]["p50"] is not None]
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.subplots()
    xs = [p["throughput_per_s"] for p in points]
    for metric, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        ax.plot(xs, [p["latency_ms"][metric] for p in points], style, ms=4, label=metric)
    for p in points:
        if not p["met"]:
            ax.plot(p["throughput_per_s"], p["latency_ms"]["p95"], "x", color="red", ms=8)
    if result.get("slo_limit_ms"):
        ax.axhline(result["slo_limit_ms"], color="red", ls="--", lw=1, label=f"SLO {result['slo']}")
    if result.get("knee"):
        k = result["knee"]
        ax.axvline(k["throughput_per_s"], color="grey", ls=":", lw=1, label="knee")
    ax.set_xlabel("throughput (orchestrations/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    best = result.get("max_rate_per_s")
    ax.set_title(
        f"highest rate within {result['slo']}: "
        + (f"{best:.3g}/s, {result['saturates_first']} saturate first" if best else "none"),
        fontsize=9,
    )
    return figure


def heatmap(rows: list[dict], x_key: str, y_key: str) -> Figure:
    """rows: {x_key: value, y_key: value, "max_rate_per_s": rate or None}."""
    xs = list(dict.fromkeys(r[x_key] for r in rows))
    ys = list(dict.fromkeys(r[y_key] for r in rows))
    grid = [[float("nan")] * len(xs) for _ in ys]
    for r in rows:
        rate = r["max_rate_per_s"]
        grid[ys.index(r[y_key])][xs.index(r[x_key])] = rate if rate is not None else 0.0
    figure = Figure(figsize=(1.2 * len(xs) + 3, 0.8 * len(ys) + 2), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
    for i in range(len(ys)):
        for j in range(len(xs)):
            ax.text(j, i, f"{grid[i][j]:.3g}", ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    figure.colorbar(image, ax=ax, label="highest sustained rate (orchestrations/s)")
    return figure
