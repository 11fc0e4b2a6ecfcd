"""Results over time around faults (`durosim run --json` of a scenario with `[[faults]]`): the
latency of the orchestrations that started in each bucket of time and the completions per second,
with each fault's window shaded and the recovery objective drawn, and, when given, a measured
run's buckets beside the prediction."""

from __future__ import annotations

import math

from matplotlib.figure import Figure


def _xy(timeline: list[dict], key: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for bucket in timeline:
        value = bucket[key]
        if value is not None:
            xs.append(bucket["start_s"])
            ys.append(value * scale)
    return xs, ys


def over_time(report: dict, measured: dict | None = None, title: str = "") -> Figure:
    """`report`: the `faults` object of `run --json`; `measured`: the same shape from a
    recording (`durosim validate`), drawn in black."""
    figure = Figure(figsize=(8, 5.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    _draw(top, bottom, report, measured, title)
    return figure


def validated(result: dict) -> Figure:
    """`durosim validate --json`: measured and predicted over time, a row per recording with
    faults."""
    rows = [t for t in result["traces"] if "faults" in t.get("extra", {})]
    if not rows:
        raise ValueError("over time only recordings with faults (`durosim record --fault`)")
    figure = Figure(figsize=(11, 3.2 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), 2, squeeze=False)
    for (left, right), row in zip(axes, rows):
        faults = row["extra"]["faults"]
        name = row["trace"].rsplit("/", 1)[-1].removesuffix(".jsonl")
        _draw(left, right, faults["predicted"], faults["measured"], name)
    return figure


def _draw(top, bottom, report: dict, measured: dict | None, title: str) -> None:
    width = report["bucket_s"]
    series = [("predicted", report, "tab:blue")]
    if measured is not None:
        series.insert(0, ("measured", measured, "black"))
    for label, data, colour in series:
        timeline = data["timeline"]
        xs, ys = _xy(timeline, "p95_ms")
        top.step(xs, ys, where="post", color=colour, label=f"{label} p95")
        xs, ys = _xy(timeline, "mean_ms")
        top.step(xs, ys, where="post", color=colour, ls=":", label=f"{label} mean")
        xs, ys = _xy(timeline, "completed", 1.0 / width)
        bottom.step(xs, ys, where="post", color=colour, label=f"{label} completed")
        xs, ys = _xy(timeline, "backlog")
        bottom.step(xs, ys, where="post", color=colour, ls="--", lw=0.8,
                    label=f"{label} backlog (orchestrations)")  # fmt: skip
    end_of_run = max((b["start_s"] + width for b in report["timeline"]), default=1.0)
    for start, end in report["windows"]:
        for ax in (top, bottom):
            ax.axvspan(start, end if end is not None else end_of_run, color="red", alpha=0.12)
    if math.isfinite(report["slo_ms"]):
        top.axhline(report["slo_ms"], color="red", ls="--", lw=1,
                    label=f"objective p95 {report['slo_ms']:.0f} ms")  # fmt: skip
    top.set_yscale("log")
    top.set_ylabel("latency by start (ms)")
    bottom.set_ylabel("per second")
    bottom.set_xlabel("time from the run's start (s); the fault shaded")
    for ax in (top, bottom):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper right")
    top.set_title(
        (f"{title}: " if title else "")
        + "; ".join(report["faults"])
        + (
            "; never recovered"
            if report["recovery_s"] is None
            else f"; recovery {report['recovery_s']:.1f} s"
        ),
        fontsize=9,
    )
