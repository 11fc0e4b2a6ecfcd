"""One orchestration's timeline: the client, each dispatcher slot and each pool connection as
lanes, the provider calls as bars (pool wait, then the round trips to the commit, then the reply),
so the poll waits and the round trips show. Drawn from call records (`durosim run --trace`)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Patch

OP_COLOURS = {
    "fetch_orchestration_item": "#4c72b0",
    "ack_orchestration_item": "#64b5cd",
    "orchestration_turn": "#4c72b0",
    "fetch_work_item": "#55a868",
    "ack_work_item": "#8fd19e",
    "fetch_history": "#dd8452",
    "get_custom_status": "#da8bc3",
    "enqueue_orchestrator_work": "#8172b2",
}


def _lane_order(lane: str) -> tuple:
    kind = 0 if lane == "client" else 1 if lane.startswith("orch") else 2 if lane.startswith(
        "work") else 3  # fmt: skip
    digits = "".join(c for c in lane if c.isdigit())
    return kind, int(digits) if digits else 0


def timeline(records: list[dict], instance: str) -> Figure:
    """records: orchestration and call records of one simulated run (ms)."""
    orchestration = next(
        r for r in records if r.get("type") == "orchestration" and r["instance"] == instance
    )
    lo, hi = orchestration["start_ms"], orchestration["end_ms"]
    calls = [
        r for r in records
        if r.get("type") == "call" and r["end_ms"] >= lo and r["start_ms"] <= hi
    ]  # fmt: skip
    lanes = sorted({r["actor"] for r in calls} | {f"conn {r['connection']}" for r in calls
                                                  if r.get("connection", -1) >= 0},
                   key=_lane_order)  # fmt: skip
    index = {lane: i for i, lane in enumerate(lanes)}
    figure = Figure(figsize=(12, 0.42 * len(lanes) + 1.6), layout="constrained")
    ax = figure.subplots()
    for r in calls:
        op = r["op"].replace(" (empty)", "").replace(" (error)", "")
        colour = OP_COLOURS.get(op, "#8c8c8c")
        mine = r["instance"] == instance
        alpha = 1.0 if mine else 0.35
        y = index[r["actor"]]
        if r["acquired_ms"] > r["start_ms"]:
            ax.barh(y, r["acquired_ms"] - r["start_ms"], left=r["start_ms"], color="#c44e52",
                    height=0.25, alpha=alpha)  # fmt: skip
        edge = "k" if mine else None
        ax.barh(y, r["end_ms"] - r["acquired_ms"], left=r["acquired_ms"], color=colour,
                height=0.6, alpha=alpha, edgecolor=edge, linewidth=0.4)  # fmt: skip
        ax.plot([r["commit_ms"]] * 2, [y - 0.3, y + 0.3], color="k", lw=0.6, alpha=alpha)
        if r.get("connection", -1) >= 0:
            yc = index[f"conn {r['connection']}"]
            ax.barh(yc, r["released_ms"] - r["acquired_ms"], left=r["acquired_ms"],
                    color=colour, height=0.6, alpha=alpha * 0.8)  # fmt: skip
    ax.axvline(lo, color="k", ls="--", lw=0.8)
    ax.axvline(hi, color="k", ls="--", lw=0.8)
    ax.set_yticks(range(len(lanes)), lanes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    ax.set_xlabel("simulated time (ms)")
    ax.set_title(
        f"{instance}: {hi - lo:.0f} ms from start to the client seeing completion; "
        "bold = this orchestration's calls, | = commit, red = pool wait",
        fontsize=9,
    )
    handles = [Patch(color=c, label=op) for op, c in OP_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, ncols=4, loc="upper center",
              bbox_to_anchor=(0.5, -0.12))  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    return figure
