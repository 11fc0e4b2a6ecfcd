"""A recording with faults (`durosim record --fault`) against the model's replay of the same
faults: the time until the p95 latency is back under the objective after the fault ended
(within `RECOVERY_TOLERANCE_PCT` of it, and never less than one bucket), the throughput from
the fault's end to the end of the arrivals (the usual tolerance), and the activities run more
than once (the same count, give or take `RERUNS_SLACK`).

The objective is the measured run's: twice the p95 of the orchestrations that completed before the
first fault; the model is judged against the same one. A fault starts where the recording says
it was applied and lasts until it says it ended (a database restart takes its own time).
"""

from __future__ import annotations

import math

from durosim.evidence.trace_format import Trace
from durosim.model.faults import Fault, Recovery, Run, default_slo_ms, report
from durosim.sim.config import toml_value

RECOVERY = "recovery_s"
THROUGHPUT_AFTER = "throughput_after_per_s"
RERUNS = "activity_reruns"
RECOVERY_TOLERANCE_PCT = 20.0
RERUNS_SLACK = 1.0
"""Activities run again: the model's mean per run may differ from the measured count by this
many, or 20% of it, whichever is more."""


def has_faults(trace: Trace) -> bool:
    return bool(trace.conditions.get("faults"))


def _origin_ms(trace: Trace) -> float:
    return min((o.start_ms for o in trace.orchestrations), default=0.0)


def windows(trace: Trace) -> list[dict]:
    """The trace's faults as `[[faults]]` tables, on the model's clock (its first start is 0),
    from when each was applied to when it ended, as measured where the recording says."""
    origin = _origin_ms(trace) / 1000.0
    out = []
    for fault in trace.conditions["faults"]:
        start = fault.get("applied_s", fault["start_s"])
        end = fault.get("ended_s")
        if end is None and fault.get("duration_s") is not None:
            end = fault["start_s"] + fault["duration_s"]
        table = {"kind": fault["kind"], "start_s": round(start - origin, 3)}
        if end is not None:
            table["duration_s"] = round(end - start, 3)
        if fault.get("node") is not None:
            table["node"] = fault["node"]
        if fault["kind"] == "database" and trace.conditions.get("rtt_nominal_ms", 0) > 0:
            # the lab's delay proxy accepts a connection and closes it when the server is down
            table["connect"] = "closed"
        out.append(table)
    return out


def runs(trace: Trace) -> list[Run]:
    """Every orchestration after the warm-up as (start, end, failed), seconds from the first."""
    origin = _origin_ms(trace)
    return [
        ((o.start_ms - origin) / 1000.0, (o.end_ms - origin) / 1000.0, not o.completed)
        for o in trace.orchestrations
        if not o.warmup
    ]


def overrides(trace: Trace, bucket_s: float) -> list[str]:
    """`--set` overrides that replay the trace's faults and judge recovery by its objective."""
    faults = windows(trace)
    slo = slo_ms(trace, faults)
    return [
        "faults=[" + ", ".join(_inline(f) for f in faults) + "]",
        f"recovery.slo_ms={slo!r}",
        f"recovery.bucket_ms={bucket_s * 1000.0!r}",
    ]


def _inline(table: dict) -> str:
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in table.items()) + "}"


def slo_ms(trace: Trace, faults: list[dict] | None = None) -> float:
    faults = faults if faults is not None else windows(trace)
    return default_slo_ms(runs(trace), min(f["start_s"] for f in faults))


def _last_end(faults: list[dict]) -> float:
    return max(f["start_s"] + f.get("duration_s", 0.0) for f in faults)


def measured(trace: Trace, bucket_s: float) -> tuple[dict[str, float], dict]:
    """The recording's recovery time, throughput after the fault and activities run again,
    and its results over time: the model's fault report (`durosim.model.faults.report`) made
    of the one run it recorded, for a figure of both."""
    faults = windows(trace)
    orchestrations = runs(trace)
    counts = trace.activity_executions
    reruns = None if counts is None else float(counts["total"] - counts["distinct"])
    over_time = report(
        tuple(Fault(**f) for f in faults),
        Recovery(bucket_s, slo_ms(trace, faults) / 1000.0),
        [orchestrations],
        [reruns or 0.0],
    )
    recovery = over_time["recovery_s"]
    out = {
        RECOVERY: math.inf if recovery is None else recovery,
        THROUGHPUT_AFTER: throughput_after(orchestrations, _last_end(faults)),
    }
    if reruns is not None:
        out[RERUNS] = reruns
    return out, over_time


def throughput_after(orchestrations: list[Run], fault_end_s: float) -> float:
    """Completions per second from the fault's end to the last arrival."""
    last_start = max(s for s, _, _ in orchestrations)
    span = last_start - fault_end_s
    if span <= 0:
        return math.nan
    done = sum(
        1
        for _, e, bad in orchestrations
        if e is not None and not bad and fault_end_s <= e < last_start
    )
    return done / span


def predicted(over_time: dict, per_run: list[list[Run]], faults: list[dict]) -> dict[str, float]:
    """The same from the model's fault report and its runs' orchestrations."""
    end = _last_end(faults)
    after = [throughput_after(r, end) for r in per_run if r]
    return {
        RECOVERY: math.inf if over_time["recovery_s"] is None else over_time["recovery_s"],
        THROUGHPUT_AFTER: sum(after) / len(after) if after else math.nan,
        RERUNS: over_time["activity_reruns_per_run"],
    }


def within(
    metric: str,
    measured_value: float,
    predicted_value: float,
    asked: float | None,
    usual: float,
    bucket_s: float,
):
    """(error, allowed, ok) for one fault metric. Throughput after the fault: in % (`asked`, or
    `usual`). The recovery time: in seconds, allowed `asked` (or 20%) of the measured time but
    never less than one bucket, its resolution. Activities run again: a count, allowed `asked`
    (or the larger of 1 and 20% of the measured count)."""
    if metric == THROUGHPUT_AFTER:
        limit = asked if asked is not None else usual
        if not measured_value or math.isnan(measured_value):
            return math.nan, limit, False
        error = (predicted_value - measured_value) / measured_value * 100.0
        return round(error, 2), limit, abs(error) <= limit
    share = (asked if asked is not None else 20.0) / 100.0
    if math.isinf(measured_value) or math.isinf(predicted_value):
        # a recovery that never came within the run: the same, or wrong
        same = measured_value == predicted_value
        return (0.0 if same else math.inf), bucket_s, same
    error = predicted_value - measured_value
    if metric == RECOVERY:
        allowed = max(share * measured_value, bucket_s)
    else:
        allowed = max(RERUNS_SLACK, share * measured_value)
    return round(error, 2), allowed, abs(error) <= allowed


UNITS = {RECOVERY: "s", RERUNS: ""}
"""Fault metrics whose error is a difference, not a %: their unit."""
