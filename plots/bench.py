"""How the simulator's cost grows, from `durosim.experiments.bench.cost_curves` rows."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, NullFormatter

LABELS = {
    "nodes": "runtime nodes (5 orchestrations/s each)",
    "slots": "worker and orchestration slots a node",
    "rate": "arrival rate (orchestrations/s)",
    "simulated_s": "simulated seconds of arrivals",
}


def cost_curves(result: dict, machine: str = "") -> Figure:
    """One panel per axis: CPU seconds of one replication against the value, on log-log axes,
    with the provider calls simulated per CPU second beside each point."""
    axes_names = [a for a in LABELS if result.get(a)]
    figure = Figure(figsize=(9, 7), layout="constrained")
    panels = figure.subplots(2, 2, squeeze=False).flat
    for ax in list(panels)[len(axes_names) :]:
        ax.set_visible(False)
    for ax, name in zip(figure.axes, axes_names):
        rows = result[name]
        xs = [r["value"] for r in rows]
        ys = [r["cpu_s"] for r in rows]
        ax.plot(xs, ys, "o-", ms=4)
        for r in rows:
            rate = r["calls"] / r["cpu_s"] / 1000 if r["cpu_s"] else 0
            ax.annotate(f"{rate:.0f}k calls/s", (r["value"], r["cpu_s"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -10))  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))  # a decade may hold no major tick
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xticks(xs)
        ax.set_xlabel(LABELS[name])
        ax.set_ylabel("CPU s, one replication")
        ax.grid(alpha=0.3, which="both")
    title = f"durosim's cost around the production scenario\n{result['base']}"
    figure.suptitle(title + (f"; {machine}" if machine else ""), fontsize=10)
    return figure
