"""The validation report in Markdown: predicted vs measured for every trace, the failures of
open-loop runs, the provider calls by kind where a trace has call records, the published rows at
their stated and inferred RTTs, and the cross-checks between rows of one site."""

from __future__ import annotations

import math
from pathlib import Path

from durosim.evidence.validate import (
    CALLS_TOLERANCE_PCT,
    FAILED_FACTOR,
    RTT_SEARCH_MS,
    SERVER_BUSY,
    SERVER_BUSY_TOLERANCE_POINTS,
    Comparison,
    CrossCheck,
    failed_ok,
)

MIN_WAITING = 0.05
"""Backends on average below which the report leaves a (procedure, wait) out."""


def _name(c: Comparison) -> str:
    """A trace as the tables name it: its folder and file name, e.g. faults/rtt0_..._db8."""
    return f"{Path(c.trace).parent.name}/{Path(c.trace).stem}"


def _rtt(value: float | None) -> str:
    if value is None:
        return ""
    if value in RTT_SEARCH_MS:
        return f"{value:g} (bound)"
    return f"{value:g}"


def _conditions(c: Comparison) -> str:
    s = c.scenario
    w, o = s.workload, s.runtime_options
    mode = {
        "sequential": "seq",
        "closed": f"closed {w.in_flight}",
        "stress": f"stress {w.in_flight}",
        "open": f"open {w.arrival_rate_per_s:g}/s, wait {w.wait_timeout_s:g} s",
    }
    started = [f.name for f in w.workflows if f.weight is not None]
    parts = [
        f"RTT {s.network.rtt.mean * 1000:g}",
        f"{o.orchestration_concurrency}:{o.worker_concurrency}",
        "+".join(started) if started else f"f{w.fanout}",
        mode[w.mode],
    ]
    if s.host.nodes > 1:
        parts.append(f"{s.host.nodes} nodes")
    if "database_cores" in c.conditions:
        parts.append(f"db {s.database.cores} core{'s' if s.database.cores > 1 else ''}")
    if w.activity.mean:
        parts.append(f"act {w.activity.mean * 1000:g} ms")
    if o.dispatcher_poll_interval_s != 0.1:
        parts.append(f"poll {o.dispatcher_poll_interval_s * 1000:g}")
    if s.pool.size != 10:
        parts.append(f"pool {s.pool.size}")
    return ", ".join(parts)


def _cell(c: Comparison, metric: str) -> str:
    if metric not in c.measured:
        return ""
    error = c.errors_pct[metric]
    mark = "" if abs(error) <= c.tolerances_pct[metric] else " **✗**"
    return f"{_num(c.measured[metric])} / {_num(c.predicted[metric])} ({error:+.1f}%){mark}"


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def markdown(
    comparisons: list[Comparison],
    stated: list[Comparison] | None = None,
    cross: list[CrossCheck] | None = None,
    sets: tuple[str, ...] = (),
) -> str:
    lines: list[str] = []
    if sets:
        changed = ", ".join(f"`{s}`" for s in sets)
        lines += [f"The model with, for every trace: {changed} (`validate --set`).", ""]
    orchestration = [c for c in comparisons if "mean_ms" in c.measured]
    summary = [c for c in comparisons if "completed" in c.measured]
    if orchestration:
        lines += [
            "Each cell: measured / predicted (error). **✗** marks an error outside the tolerance "
            "(10%, p95 15%, at RTT >= 20 ms; 25% below).",
            "",
            "The last column is the first Wasserstein distance between the measured and simulated "
            "latency distributions (the mean gap between their quantiles), in ms and in % of the "
            "measured mean.",
            "",
            "| trace | conditions | mean ms | p50 ms | p95 ms | orch/s | Wasserstein |",
            "|---|---|---|---|---|---|---:|",
        ]
        for c in orchestration:
            w1 = c.extra.get("wasserstein_ms")
            distance = (
                "" if w1 is None else f"{w1:.3g} ms ({w1 / c.measured['mean_ms'] * 100:.1f}%)"
            )
            lines.append(
                f"| {_name(c)} | {_conditions(c)} | "
                + " | ".join(
                    _cell(c, m) for m in ("mean_ms", "p50_ms", "p95_ms", "throughput_per_s")
                )
                + f" | {distance} |"
            )
        lines.append("")
    open_loop = [c for c in comparisons if "failed" in c.measured]
    if open_loop:
        lines += [
            "Open-loop runs: orchestrations that did not complete within the wait timeout, "
            f"measured / predicted per run (the prediction within a factor of {FAILED_FACTOR:g}; "
            "where none failed for real, fewer than one a run).",
            "",
            "| trace | arrivals | not completed |",
            "|---|---:|---|",
        ]
        for c in open_loop:
            measured, predicted = c.measured["failed"], c.predicted.get("failed", 0.0)
            mark = "" if failed_ok(measured, predicted) else " **✗**"
            name = _name(c)
            lines.append(
                f"| {name} | {c.extra.get('arrivals', '')} | {measured:g} / {predicted:.3g}{mark} |"
            )
        lines.append("")
    loaded = [c for c in comparisons if SERVER_BUSY in c.measured]
    if loaded:
        lines += [
            "The database's load, in recordings that measured it: the server's CPU busy "
            "(percentage points off; tolerance "
            f"{SERVER_BUSY_TOLERANCE_POINTS:g}), then the measured node's latency and "
            "throughput as above; measured / predicted.",
            "",
            "| trace | nodes | server CPU % | mean ms | p95 ms | orch/s |",
            "|---|---:|---|---|---|---|",
        ]
        for c in loaded:
            name = _name(c)
            points = c.errors_pct[SERVER_BUSY]
            mark = "" if abs(points) <= c.tolerances_pct[SERVER_BUSY] else " **✗**"
            busy = (
                f"{c.measured[SERVER_BUSY]:.0f} / {c.predicted[SERVER_BUSY]:.0f} "
                f"({points:+.1f}){mark}"
            )
            lines.append(
                f"| {name} | {c.scenario.host.nodes} | {busy} | "
                + " | ".join(_cell(c, m) for m in ("mean_ms", "p95_ms", "throughput_per_s"))
                + " |"
            )
        lines.append("")
    faulted = [c for c in comparisons if "faults" in c.extra]
    if faulted:
        lines += [
            "Recordings with faults (`record --fault`), the same faults replayed in the model: "
            "the time from the fault's end until the p95 latency of what starts is back under "
            "the objective (twice the measured p95 before the fault; allowed 20%, at least one "
            "bucket), the completions per second from the fault's end to the last arrival, and "
            "the activities run more than once; measured / predicted.",
            "",
            "| trace | fault | objective | recovery s | throughput after /s "
            "| activities run again |",
            "|---|---|---:|---|---|---|",
        ]
        for c in faulted:
            name = _name(c)
            report = c.extra["faults"]["predicted"]
            cells = []
            for metric, digits in (("recovery_s", 1), ("throughput_after_per_s", 3),
                                   ("activity_reruns", 1)):  # fmt: skip
                if metric not in c.measured:
                    cells.append("")
                    continue
                mark = "" if abs(c.errors_pct[metric]) <= c.tolerances_pct[metric] else " **✗**"
                m, p = (
                    "never" if math.isinf(x) else f"{x:.{digits}f}"
                    for x in (c.measured[metric], c.predicted[metric])
                )
                cells.append(f"{m} / {p}{mark}")
            lines.append(
                f"| {name} | {'; '.join(report['faults'])} | {report['slo_ms']:.0f} ms | "
                + " | ".join(cells)
                + " |"
            )
        lines.append("")
    sampled = [c for c in comparisons if c.extra.get("server_waits")]
    if sampled:
        lines += [
            "Where the server's active backends were, in recordings that sampled "
            "pg_stat_activity (`record --server-waits`): backends on average, by procedure, on "
            f"a core (CPU: running or waiting for one) or waiting; entries of {MIN_WAITING:g} "
            "and more. The model says how many orchestration fetches wait on an instance's "
            "advisory lock (measured / predicted); it has no other waits of a backend.",
            "",
            "| trace | procedure | on a core or waiting for | backends |",
            "|---|---|---|---:|",
        ]
        for c in sampled:
            name = _name(c)
            rows = [
                (mean, op, wait)
                for op, by_wait in c.extra["server_waits"].items()
                for wait, mean in by_wait.items()
                if mean >= MIN_WAITING
            ]
            for mean, op, wait in sorted(rows, key=lambda row: (-row[0], row[1], row[2])):
                cell = f"{mean:.2f}"
                if (op, wait) == ("fetch_orchestration_item", "Lock:advisory"):
                    cell += f" / {c.extra['advisory_waiting']:.2f}"
                lines.append(f"| {name} | {op} | {wait} | {cell} |")
        lines.append("")
    mixes = [c for c in comparisons if len(c.extra.get("workflows", {})) > 1]
    if mixes:
        lines += [
            "Traffic mixes: latency by workflow, measured / predicted (the recorded mix replayed).",
            "",
            "| trace | workflow | orchestrations | mean ms | p50 ms | p95 ms |",
            "|---|---|---:|---|---|---|",
        ]
        for c in mixes:
            name = _name(c)
            for workflow, row in c.extra["workflows"].items():
                measured, predicted = row.get("measured"), row["predicted"]
                if measured is None:
                    continue
                cells = [
                    f"{_num(measured[m])} / {_num(predicted[m])} "
                    f"({(predicted[m] - measured[m]) / measured[m] * 100:+.1f}%)"
                    for m in ("mean_ms", "p50_ms", "p95_ms")
                ]
                lines.append(
                    f"| {name} | {workflow} | {measured['n']:.0f} | " + " | ".join(cells) + " |"
                )
        lines.append("")
    with_calls = [c for c in comparisons if c.extra.get("calls_per_orchestration")]
    if with_calls:
        lines += [
            "Provider calls per orchestration by kind, empty polls included, in traces with call "
            f"records: measured / predicted (error; tolerance {CALLS_TOLERANCE_PCT:g}%).",
            "",
            "| trace | kind | calls per orchestration |",
            "|---|---|---|",
        ]
        for c in with_calls:
            name = _name(c)
            for op, row in c.extra["calls_per_orchestration"].items():
                error = row["error_pct"]
                outside = error is None or abs(error) > CALLS_TOLERANCE_PCT
                text = "measured none" if error is None else f"{error:+.1f}%"
                lines.append(
                    f"| {name} | {op} | {row['measured']:.3g} / {row['predicted']:.3g} ({text})"
                    f"{' **✗**' if outside else ''} |"
                )
        lines.append("")
    if summary:
        stated_by_trace = {c.trace: c for c in stated or []}
        lines += [
            "Stress-test rows (summary records): throughput measured / predicted (error) at the "
            "RTT the trace states and, with `--infer rtt`, at the RTT inferred from the row "
            "itself; "
            "completed and total time at the RTT used last.",
            "",
            "| row | stated RTT ms | at stated RTT | inferred RTT ms | at inferred RTT "
            "| completed | total s | deadlocks/run |",
            "|---|---:|---|---:|---|---|---|---:|",
        ]
        for c in summary:
            inferred = c.inferred_rtt_ms is not None
            at_stated = stated_by_trace.get(c.trace) or (None if inferred else c)
            cells = [
                Path(c.trace).stem,
                str(c.stated_rtt_ms),
                _cell(at_stated, "throughput_per_s") if at_stated else "",
                _rtt(c.inferred_rtt_ms),
                _cell(c, "throughput_per_s") if inferred else "",
                _cell(c, "completed"),
                _cell(c, "total_s"),
                f"{c.extra.get('deadlocks_per_run', 0):.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if any(c.inferred_rtt_ms in RTT_SEARCH_MS for c in summary):
        lines += [
            f"(bound): no RTT between {RTT_SEARCH_MS[0]:g} and {RTT_SEARCH_MS[1]:g} ms reaches the "
            "row's throughput; the bound is the closest the model comes.",
            "",
        ]
    if cross:
        lines += [
            "Cross-checks: the RTT inferred from one row predicts the other rows of the same site "
            "(tolerance 10%).",
            "",
            "| from row | inferred RTT ms | predicts row | measured orch/s | predicted | error |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for x in cross:
            mark = "" if x.ok else " **✗**"
            lines.append(
                f"| {Path(x.source).stem} | {_rtt(x.inferred_rtt_ms)} | {Path(x.target).stem} | "
                f"{x.measured_per_s:g} | {x.predicted_per_s:.3g} | {x.error_pct:+.1f}%{mark} |"
            )
        lines.append("")
    return "\n".join(lines)
