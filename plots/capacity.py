"""Capacity figures from `durosim.experiments.capacity` results: the throughput-latency curve
with the objective and the knee, and a heat map of the highest sustained rate over two
parameters."""

from __future__ import annotations

from matplotlib.figure import Figure


def throughput_latency(result: dict, scenario: str = "") -> Figure:
    """Latency against the offered arrival rate (it does not fold back past saturation, as
    throughput would), the objective, the knee and the rates that miss it."""
    points = [p for p in result["points"] if p["latency_ms"]["p50"] is not None]
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.subplots()
    xs = [p["rate_per_s"] for p in points]
    for metric, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        ax.plot(xs, [p["latency_ms"][metric] for p in points], style, ms=4, label=metric)
    missed = [p for p in points if not p["met"]]
    if missed:
        ax.plot([p["rate_per_s"] for p in missed], [p["latency_ms"]["p95"] for p in missed],
                "x", color="red", ms=8, label="misses the SLO")  # fmt: skip
    if result.get("slo_limit_ms"):
        ax.axhline(result["slo_limit_ms"], color="red", ls="--", lw=1, label=f"SLO {result['slo']}")
    if result.get("knee"):
        k = result["knee"]
        ax.axvline(k["rate_per_s"], color="grey", ls=":", lw=1, label="knee")
    best = result.get("max_rate_per_s")
    if best:
        ax.axvline(best, color="green", ls="-.", lw=1, label=f"highest within SLO ({best:.3g}/s)")
    ax.set_xlabel("offered arrival rate (orchestrations/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    name = f"{scenario}: " if scenario else ""
    ax.set_title(
        f"{name}highest rate within {result['slo']}: "
        + (f"{best:.3g}/s, {result['saturates_first']} saturate first" if best else "none"),
        fontsize=9,
    )
    return figure


def heatmap(rows: list[dict], x_key: str, y_key: str, title: str = "") -> Figure:
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
    low, high = image.get_clim()
    middle = (low + high) / 2.0
    for i in range(len(ys)):
        for j in range(len(xs)):
            # dark text on the light (high) end of viridis, white on the dark end
            colour = "black" if grid[i][j] > middle else "white"
            ax.text(j, i, f"{grid[i][j]:.3g}", ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    figure.colorbar(image, ax=ax, label="highest sustained rate (orchestrations/s)")
    ax.set_title(title or f"highest sustained rate by {x_key} and {y_key}", fontsize=9)
    return figure


def sweep_lines(result: dict, keys: list[str]) -> Figure:
    """Latency (mean and p95, with their 95% CIs) and the database's CPU busy against the one
    key a sweep varied (`keys`: the keys it varied): how a deployment grows, e.g. against
    `host.nodes`."""
    rows = result["rows"]
    if len(keys) != 1:
        raise ValueError(f"a sweep of one key; this one varies {len(keys)} ({', '.join(keys)})")
    key = keys[0]

    def number(row: dict, name: str) -> float | None:
        text = row.get(name, "")
        return float(text) if text not in ("", None) else None

    points = sorted(rows, key=lambda r: float(r[key]))
    xs = [float(r[key]) for r in points]
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.subplots()
    for stat, style in (("mean", "o-"), ("p95", "s-")):
        ys = [number(r, f"latency_{stat}_ms") for r in points]
        errors = [number(r, f"latency_{stat}_ci_ms") or 0.0 for r in points]
        shown = [(x, y, e) for x, y, e in zip(xs, ys, errors) if y is not None]
        if shown:
            ax.errorbar([s[0] for s in shown], [s[1] for s in shown], [s[2] for s in shown],
                        fmt=style, ms=4, capsize=3, label=f"latency {stat} (95% CI)")  # fmt: skip
    ax.set_xlabel(key)
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3)
    cpu = ax.twinx()
    cpu.plot(xs, [(number(r, "server_utilisation") or 0.0) * 100.0 for r in points], "d--",
             color="tab:red", ms=4, label="database CPU busy")  # fmt: skip
    cpu.set_ylabel("database CPU busy (%)")
    cpu.set_ylim(0, 105)
    lines = ax.get_legend_handles_labels()
    more = cpu.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    ax.set_title(f"latency and database CPU against {key}", fontsize=9)
    return figure
