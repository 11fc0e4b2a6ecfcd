"""Predicted vs measured: set up the scenario a trace's header describes, simulate the same
workload, and compare.

For orchestration records: mean, p50 and p95 latency and throughput (measured orchestrations
over the span from the first measured start to the last measured end), warm-up records left out.
For summary records (the published stress test): throughput, completed and total time.
Predictions pool the orchestrations of several replications; throughput is their mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from durosim.evidence.conditions import WORKLOAD_TABLES
from durosim.evidence.conditions import overrides as condition_overrides
from durosim.evidence.faults import has_faults
from durosim.evidence.faults import measured as measured_faults
from durosim.evidence.faults import overrides as fault_overrides
from durosim.evidence.faults import predicted as predicted_faults
from durosim.evidence.faults import windows as fault_windows
from durosim.evidence.faults import within as within_fault
from durosim.evidence.trace_format import Trace
from durosim.experiments.results import run_replications, summarize
from durosim.model.profiles import RUNTIMES
from durosim.model.scenario import Scenario, load_table, read_table, shipped
from durosim.sim.config import ConfigError, toml_value
from durosim.sim.stats import json_safe, ks_distance, mean, percentile, wasserstein

# the shipped scenario each runtime's traces start from
BASES = {"duroxide-0.2": "lab", "duroxide-2025-11": "local-docker"}

ORCHESTRATION_METRICS = ("mean_ms", "p50_ms", "p95_ms", "throughput_per_s")
SUMMARY_METRICS = ("throughput_per_s", "completed", "total_s")
FAILED_FACTOR = 1.5
"""Orchestrations that did not complete in the wait timeout (open loop): predicted within this
factor of the measured count; where none failed for real, fewer than one a run predicted."""


# The server's CPU busy fraction, when a recording measured it: compared in percentage points.
SERVER_BUSY = "server_cpu_busy_pct"
SERVER_BUSY_TOLERANCE_POINTS = 10.0
FAULT_BUCKET_S = 2.0
"""The bucket a recording with faults is cut into to find its recovery time."""


def tolerance_pct(metric: str, rtt_ms: float) -> float:
    """The allowed error: at RTT >= 20 ms 10% (15% for p95); below, where the 100 ms poll
    quantises latency and two real runs differ by up to 20%, 25%."""
    if rtt_ms < 20.0:
        return 25.0
    return 15.0 if metric == "p95_ms" else 10.0


@dataclass(slots=True)
class Comparison:
    trace: str
    measured: dict[str, float]
    predicted: dict[str, float]
    errors_pct: dict[str, float]
    tolerances_pct: dict[str, float]
    ok: bool
    scenario: Scenario
    inferred_rtt_ms: float | None = None
    stated_rtt_ms: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    simulated_latencies_ms: list[float] = field(default_factory=list)
    measured_latencies_ms: list[float] = field(default_factory=list)
    conditions: dict = field(default_factory=dict)
    """The trace's conditions."""

    def as_json(self) -> dict:
        out = {
            "trace": self.trace,
            "measured": self.measured,
            "predicted": self.predicted,
            "errors_pct": self.errors_pct,
            "tolerances_pct": self.tolerances_pct,
            "ok": self.ok,
        }
        if self.inferred_rtt_ms is not None:
            out["inferred_rtt_ms"] = self.inferred_rtt_ms
            out["stated_rtt_ms"] = self.stated_rtt_ms
        if self.extra:
            out["extra"] = self.extra
        return json_safe(out)


@dataclass(frozen=True, slots=True)
class Base:
    """What a trace's conditions are laid over: a scenario file or shipped name (None: the
    shipped one for the trace's runtime), and `KEY=VALUE` overrides applied after the trace's
    own conditions (to ask, say, how the model does with a server whose cores are shared)."""

    scenario: str | Path | None = None
    sets: tuple[str, ...] = ()


def base_table(runtime: str, base: str | Path | Base | None) -> dict:
    if isinstance(base, Base):
        base = base.scenario
    return read_table(base if base is not None else shipped()[BASES[runtime]])


def scenario_for(
    trace: Trace, base: str | Path | Base | None = None, rtt_ms: float | None = None
) -> Scenario:
    conditions = trace.conditions
    runtime = conditions.get("runtime", "duroxide-0.2")
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"{trace.path}: conditions.runtime {runtime!r} is not one of {', '.join(RUNTIMES)}"
        )
    if "rtt_ms" not in conditions and rtt_ms is None:
        raise ConfigError(f"{trace.path}: conditions has no 'rtt_ms'; durosim needs the RTT")
    overrides = condition_overrides(conditions, rtt_ms)
    if conditions.get("mode") == "open":
        overrides += _replay(trace)
        if has_faults(trace):
            overrides += fault_overrides(trace, FAULT_BUCKET_S)
    elif trace.orchestrations:
        warmup = sum(1 for o in trace.orchestrations if o.warmup)
        measured = len(trace.orchestrations) - warmup
        overrides += [f"workload.warmup={warmup}", f"workload.count={max(measured, 1)}"]
        if conditions.get("mode") == "sequential":
            overrides.append("workload.in_flight=1")
    table = base_table(runtime, base)
    table.pop("name", None)
    for key in WORKLOAD_TABLES:
        if key in conditions:
            table.setdefault("workload", {})[key] = conditions[key]
    if (
        "workflows" in conditions
        and trace.orchestrations
        and all(o.workflow for o in trace.orchestrations)
    ):
        # the recorded mix, orchestration by orchestration, not a fresh draw
        overrides.append(f"workload.workflow_trace={toml_value(str(Path(trace.path).resolve()))}")
    if isinstance(base, Base):
        try:
            load_table(table, base.sets)  # a bad --set is the user's, not the trace's
        except ConfigError as err:
            message = str(err)  # a malformed --set names itself already
            raise ConfigError(
                message if message.startswith("--set") else f"--set: {message}"
            ) from None
        overrides += base.sets
    try:
        return load_table(table, overrides)
    except ConfigError as err:
        raise ConfigError(f"{trace.path}: conditions: {err}") from None


def _replay(trace: Trace) -> list[str]:
    """An open-loop trace is simulated with its own arrival times replayed (its warm-up ones,
    which ran one at a time before the arrivals, left out of the statistics)."""
    if "arrival_rate_per_s" not in trace.conditions:
        raise ConfigError(
            f"{trace.path}: an open-mode trace needs conditions.arrival_rate_per_s, the offered "
            "arrivals per second"
        )
    starts = sorted(o.start_ms for o in trace.orchestrations)
    measured = [o.start_ms for o in trace.orchestrations if not o.warmup]
    if not measured:
        raise ConfigError(
            f"{trace.path}: an open-mode trace needs measured orchestration records, whose "
            "start_ms are the arrival times to replay"
        )
    warmup_s = (min(measured) - starts[0]) / 1000.0
    return [
        f"workload.arrival_trace={toml_value(str(Path(trace.path).resolve()))}",
        f"workload.warmup_s={warmup_s!r}",
    ]


def _latency_metrics(latencies_ms: list[float]) -> dict[str, float]:
    return {
        "mean_ms": mean(latencies_ms),
        "p50_ms": percentile(latencies_ms, 50),
        "p95_ms": percentile(latencies_ms, 95),
    }


def measured_metrics(trace: Trace) -> dict[str, float]:
    records = trace.measured
    if trace.summaries:
        summary = trace.summaries[-1]
        out = _latency_metrics([o.latency_ms for o in records]) if records else {}
        out.update(
            throughput_per_s=summary.throughput_per_s,
            completed=float(summary.completed),
            total_s=summary.total_s,
        )
        return out
    if not records:
        raise ConfigError(
            f"{trace.path}: every orchestration record is warm-up; nothing to compare"
        )
    span_s = (max(o.end_ms for o in records) - min(o.start_ms for o in records)) / 1000.0
    out = _latency_metrics([o.latency_ms for o in records])
    out["throughput_per_s"] = len(records) / span_s if span_s > 0 else math.nan
    if trace.conditions.get("mode") == "open":
        out["failed"] = float(trace.failed if trace.failed is not None else len(trace.failures))
    return out


def _server_busy(trace: Trace) -> float | None:
    """The measured server CPU busy, in percent, when the trace's header has it."""
    busy = (trace.server or {}).get("cpu_busy")
    return None if busy is None else busy * 100.0


def predict(
    scenario: Scenario,
    replications: int,
    summary: bool,
    on_replication: Callable[[], None] | None = None,
) -> tuple[dict[str, float], dict, list]:
    """What the model predicts, by the names `measured_metrics` uses; open-loop scenarios also
    predict the orchestrations a run loses to the wait timeout (`failed`). `on_replication` is
    called as each replication finishes."""
    runs = run_replications(scenario, replications, on_replication=on_replication)
    result = summarize(scenario, runs)
    extra = {
        "deadlocks_per_run": mean(
            [run.calls.get("fetch_orchestration_item (error)", 0) for run in runs]
        ),
        "turns_per_orchestration": mean([run.turns_per_orchestration for run in runs]),
        "replications": float(replications),
        "calls_per_orchestration": result.calls_per_orchestration,
        "workflows": result.by_workflow_ms,
        "advisory_waiting": result.advisory_waiting_mean,
        "faults": result.faults,
        "orchestrations": [run.orchestrations for run in runs],
    }
    predicted = (
        {f"{stat}_ms": result.latency_ms[stat] for stat in ("mean", "p50", "p95")}
        if result.latencies_ms
        else {}
    )
    predicted["throughput_per_s"] = result.throughput_per_s
    predicted[SERVER_BUSY] = result.server_utilisation * 100.0
    if summary:
        predicted["completed"] = mean([float(run.completed) for run in runs])
        predicted["total_s"] = mean([run.total_s or math.nan for run in runs])
    if scenario.workload.mode == "open":
        predicted["failed"] = mean([float(run.failed) for run in runs])
    return predicted, extra, result.latencies_ms


def _by_workflow(trace: Trace, predicted: dict[str, list[float]]) -> dict[str, dict]:
    """Per workflow: measured and predicted mean, p50 and p95 latency, and the count."""
    out = {}
    for name, simulated in predicted.items():
        measured = [o.latency_ms for o in trace.measured if o.workflow == name]
        row: dict[str, dict] = {"predicted": {**_latency_metrics(simulated), "n": len(simulated)}}
        if measured:
            row["measured"] = {**_latency_metrics(measured), "n": len(measured)}
        out[name] = {k: {m: round(v, 2) for m, v in d.items()} for k, d in row.items()}
    return out


CALLS_TOLERANCE_PCT = 10.0
"""Provider calls per orchestration, by kind, empty polls included: what sizes a database."""


def call_counts(trace: Trace, predicted: dict[str, float]) -> dict[str, dict] | None:
    """For a trace with call records: its provider calls per measured orchestration by kind
    (calls that start between the first measured start and the last measured end), beside the
    model's, with the error in %. None without call records."""
    records = trace.measured
    if not trace.calls or not records:
        return None
    lo = min(o.start_ms for o in records)
    hi = max(o.end_ms for o in records)
    counts: dict[str, int] = {}
    for call in trace.calls:
        if lo <= call.start_ms <= hi:
            counts[call.op] = counts.get(call.op, 0) + 1
    out = {}
    for op in sorted(set(counts) | set(predicted)):
        measured = counts.get(op, 0) / len(records)
        model = predicted.get(op, 0.0)
        error = (model - measured) / measured * 100.0 if measured else math.nan
        out[op] = {
            "measured": round(measured, 3),
            "predicted": round(model, 3),
            "error_pct": None if math.isnan(error) else round(error, 1),
        }
    return out


def failed_ok(measured: float, predicted: float) -> bool:
    """Predicted failures within FAILED_FACTOR of the measured ones (fewer than one a run where
    none failed)."""
    if measured == 0:
        return predicted < 1.0
    return measured / FAILED_FACTOR <= predicted <= measured * FAILED_FACTOR


RTT_SEARCH_MS = (0.05, 400.0)


RTT_BISECTIONS = 18


def work(trace: Trace, replications: int, infer: bool) -> int:
    """The replications `compare` simulates for a trace (the unit of its progress)."""
    search = (2 + RTT_BISECTIONS) * max(3, replications // 2) if infer else 0
    return replications + search


def infer_rtt(
    trace: Trace,
    base: str | Path | None,
    replications: int,
    on_replication: Callable[[], None] | None = None,
) -> float:
    """The RTT at which the model reproduces the trace's throughput (bisection in log RTT;
    throughput falls as RTT grows). A bound of `RTT_SEARCH_MS` comes back when the model
    cannot reach the throughput at any RTT inside it."""
    target = measured_metrics(trace)["throughput_per_s"]
    summary = bool(trace.summaries)

    def throughput(rtt_ms: float) -> float:
        scenario = scenario_for(trace, base, rtt_ms)
        return predict(scenario, replications, summary, on_replication)[0]["throughput_per_s"]

    lo, hi = RTT_SEARCH_MS
    if throughput(lo) <= target:
        return lo
    if throughput(hi) >= target:
        return hi
    for _ in range(RTT_BISECTIONS):
        mid = math.sqrt(lo * hi)
        if throughput(mid) > target:
            lo = mid
        else:
            hi = mid
    return round(math.sqrt(lo * hi), 2)


def compare(
    trace: Trace,
    base: str | Path | None = None,
    replications: int = 10,
    tolerances: dict[str, float] | None = None,
    infer: bool = False,
    on_replication: Callable[[], None] | None = None,
) -> Comparison:
    """The model against `trace`; `on_replication` is called as each simulated replication
    finishes (`work` of them in all)."""
    measured = measured_metrics(trace)
    stated = trace.conditions.get("rtt_ms")
    inferred = infer_rtt(trace, base, max(3, replications // 2), on_replication) if infer else None
    scenario = scenario_for(trace, base, inferred)
    summary = bool(trace.summaries)
    predicted, extra, latencies = predict(scenario, replications, summary, on_replication)
    rtt_ms = scenario.network.rtt.mean * 1000.0
    errors: dict[str, float] = {}
    allowed: dict[str, float] = {}
    ok = True
    busy = _server_busy(trace)
    if busy is not None:
        measured[SERVER_BUSY] = busy
    for metric, value in measured.items():
        if metric == "failed":
            ok = ok and failed_ok(value, predicted.get("failed", 0.0))
            continue
        if metric == SERVER_BUSY:  # percentage points, not a relative error
            points = predicted[SERVER_BUSY] - value
            errors[metric] = round(points, 2)
            allowed[metric] = (tolerances or {}).get(metric, SERVER_BUSY_TOLERANCE_POINTS)
            ok = ok and abs(points) <= allowed[metric]
            continue
        if metric not in predicted:  # nothing completed in the model
            errors[metric] = math.nan
            allowed[metric] = (tolerances or {}).get(metric, tolerance_pct(metric, 0.0))
            ok = False
            continue
        got = predicted[metric]
        error = (got - value) / value * 100.0 if value else math.nan
        errors[metric] = round(error, 2)
        limit = (tolerances or {}).get(metric, tolerance_pct(metric, rtt_ms))
        allowed[metric] = limit
        if not (abs(error) <= limit):
            ok = False
    waits = (trace.server or {}).get("waits")
    advisory = extra.pop("advisory_waiting")
    report, per_run = extra.pop("faults"), extra.pop("orchestrations")
    if report is not None:
        usual = tolerances or {}
        fault_measured, over_time = measured_faults(trace, FAULT_BUCKET_S)
        fault_predicted = predicted_faults(report, per_run, fault_windows(trace))
        for metric, value in fault_measured.items():
            got = fault_predicted[metric]
            error, limit, fine = within_fault(
                metric,
                value,
                got,
                usual.get(metric),
                tolerance_pct("throughput_per_s", rtt_ms),
                FAULT_BUCKET_S,
            )
            measured[metric], predicted[metric] = value, got
            errors[metric], allowed[metric] = error, limit
            ok = ok and fine
        extra["faults"] = {"predicted": report, "measured": over_time}
    if waits:
        extra["server_waits"] = waits["backends"]
        extra["advisory_waiting"] = round(advisory, 3)
    if trace.conditions.get("mode") == "open":
        extra["arrivals"] = trace.arrivals or sum(not o.warmup for o in trace.orchestrations)
    predicted_by_workflow = extra.pop("workflows")
    if predicted_by_workflow:
        extra["workflows"] = _by_workflow(trace, predicted_by_workflow)
    predicted_calls = extra.pop("calls_per_orchestration")
    calls = call_counts(trace, predicted_calls)
    if calls:
        extra["calls_per_orchestration"] = calls
    measured_latencies = [o.latency_ms for o in trace.measured]
    if measured_latencies and latencies:
        extra["ks_distance"] = round(ks_distance(measured_latencies, latencies), 4)
        extra["wasserstein_ms"] = round(wasserstein(measured_latencies, latencies), 2)
    if busy is None:
        predicted.pop(SERVER_BUSY)
    return Comparison(
        trace=trace.path,
        measured={k: round(v, 4) for k, v in measured.items()},
        predicted={k: round(v, 4) for k, v in predicted.items()},
        errors_pct=errors,
        tolerances_pct=allowed,
        ok=ok,
        scenario=scenario,
        inferred_rtt_ms=inferred,
        stated_rtt_ms=stated,
        extra=extra,
        simulated_latencies_ms=latencies,
        measured_latencies_ms=measured_latencies,
        conditions=trace.conditions,
    )


@dataclass(slots=True)
class CrossCheck:
    """The RTT inferred from one published row, used to predict another row of the same site."""

    site: str
    source: str
    target: str
    inferred_rtt_ms: float
    measured_per_s: float
    predicted_per_s: float
    error_pct: float
    ok: bool


def site_of(trace: Trace) -> tuple:
    c = trace.conditions
    return (c.get("runtime"), c.get("rtt_ms"), c.get("duration_s"), c.get("mode"))


def cross_checks(
    comparisons: list[Comparison],
    traces: list[Trace],
    base: str | Path | None,
    replications: int,
    tolerance: float = 10.0,
) -> list[CrossCheck]:
    """For every pair of summary traces of one site (same runtime, stated RTT and duration,
    other concurrency), predict each from the RTT inferred from the other."""
    inferred = {c.trace: c.inferred_rtt_ms for c in comparisons if c.inferred_rtt_ms is not None}
    by_site: dict[tuple, list[Trace]] = {}
    for trace in traces:
        if trace.summaries and trace.path in inferred:
            by_site.setdefault(site_of(trace), []).append(trace)
    out = []
    for group in by_site.values():
        for source in group:
            for target in group:
                if source is target:
                    continue
                rtt = inferred[source.path]
                scenario = scenario_for(target, base, rtt)
                predicted = predict(scenario, replications, True)[0]["throughput_per_s"]
                measured = target.summaries[-1].throughput_per_s
                error = (predicted - measured) / measured * 100.0
                out.append(
                    CrossCheck(
                        site=Path(source.path).stem.rsplit("-", 1)[0],
                        source=Path(source.path).name,
                        target=Path(target.path).name,
                        inferred_rtt_ms=rtt,
                        measured_per_s=measured,
                        predicted_per_s=round(predicted, 4),
                        error_pct=round(error, 2),
                        ok=abs(error) <= tolerance,
                    )
                )
    return out
