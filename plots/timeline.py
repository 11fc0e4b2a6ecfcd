"""One orchestration's timeline: the client, each dispatcher slot and each pool connection as
lanes, the provider calls as bars (pool wait, then the round trips to the commit, then the reply),
so the poll waits and the round trips show; below them, when any call waited for a connection,
how many callers waited, by kind (client checks, orchestration slots, worker slots), which is
what a scenario past saturation collapses on. Drawn from call records (`durosim run --trace`)."""

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
    waits = [r for r in calls if r["acquired_ms"] > r["start_ms"]]
    figure = Figure(figsize=(12, 0.42 * len(lanes) + 1.6 + 1.4 * bool(waits)), layout="constrained")
    if waits:
        ax, below = figure.subplots(2, 1, sharex=True, height_ratios=[max(len(lanes), 3), 3])
        _waiters(below, waits)
    else:
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
    (below if waits else ax).set_xlabel("simulated time (ms)")
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


def _kind(actor: str) -> str:
    return {"orch": "orchestration slots", "work": "worker slots"}.get(actor[:4], "client")


def _waiters(ax, waits: list[dict]) -> None:
    """Callers waiting for a connection over time, one step line per kind of caller."""
    for kind, colour in (
        ("client", "#dd8452"),
        ("orchestration slots", "#4c72b0"),
        ("worker slots", "#55a868"),
    ):
        edges = sorted(
            [(r["start_ms"], 1) for r in waits if _kind(r["actor"]) == kind]
            + [(r["acquired_ms"], -1) for r in waits if _kind(r["actor"]) == kind]
        )
        if not edges:
            continue
        xs, ys, level = [edges[0][0]], [0], 0
        for at, change in edges:
            level += change
            xs.append(at)
            ys.append(level)
        ax.step(xs, ys, where="post", color=colour, lw=1.0, label=kind)
    ax.set_ylabel("waiting for\na connection", fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
