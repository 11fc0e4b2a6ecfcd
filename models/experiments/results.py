"""Replications of one scenario reduced, once, to what a user asks first: latency percentiles,
throughput, completions, DB calls and turns per orchestration, where the time goes, and the use
of pool, server and slots, each mean with the half-width of its 95% confidence interval across
replications. `run`, `compare`, `sweep`, `capacity` and `validate` all read this one `Summary`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from durosim.model.breakdown import PARTS
from durosim.model.faults import report as fault_report
from durosim.model.scenario import Scenario
from durosim.model.world import RunResult, simulate
from durosim.sim.stats import mean, mean_ci, percentile

LATENCY_STATS = ("mean", "p50", "p95", "p99")


def run_replications(
    scenario: Scenario,
    replications: int | None = None,
    on_done: Callable[[], None] | None = None,
    on_replication: Callable[[], None] | None = None,
) -> list[RunResult]:
    """`replications` (default: the scenario's) in order; `on_done` is called as each
    orchestration ends and `on_replication` as each replication does (for progress)."""
    runs = []
    for rep in range(replications or scenario.replications):
        runs.append(simulate(scenario, rep, on_done=on_done))
        if on_replication:
            on_replication()
    return runs


def _latency_stat(latencies: list[float], stat: str) -> float:
    if stat == "mean":
        return sum(latencies) / len(latencies)
    return percentile(latencies, float(stat[1:]))


def _ci(values: list[float]) -> float | None:
    half = mean_ci(values)[1]
    return None if math.isnan(half) else round(half, 4)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class Summary:
    """A scenario's replications, reduced. Values are unrounded; `to_dict` rounds them as
    `durosim run --json` prints them."""

    scenario: str
    runtime: str
    replications: int
    completed: int
    failed: int
    measured: int
    latencies_ms: list[float]
    """Every measured orchestration's latency, all replications pooled."""
    latency_ms: dict[str, float | None]
    """Mean and percentiles (LATENCY_STATS) of the pooled latencies; None when none completed."""
    latency_per_run_ms: dict[str, list[float]]
    """Each replication's own mean and percentiles (replications with completions only)."""
    throughput_per_run: list[float]
    by_workflow_ms: dict[str, list[float]]
    """Measured latencies by workflow, pooled (only when the scenario names its workflows)."""
    arrivals_per_s: float
    """Open loop with Poisson arrivals: the rate that really arrived after the warm-up (0
    otherwise)."""
    total_per_run_s: list[float]
    """Stress mode: each replication's pump-and-drain time."""
    calls_per_orchestration: dict[str, float]
    turns_per_orchestration: float | None
    breakdown_ms: dict[str, float]
    pool_in_use_mean: float
    pool_waiting_mean: float
    pool_waiting_by_caller: dict[str, float]
    """Callers waiting for a connection on average, by kind of caller."""
    db_calls_per_s: dict[str, float]
    """Provider calls per second in the measured window: busy, idle (empty fetches), total."""
    server_utilisation: float
    orchestrator_queue_mean: float
    worker_queue_mean: float
    orchestration_slot_utilisation: float
    worker_slot_utilisation: float
    pool_timed_out_per_run: float = 0.0
    """Provider calls a run lost to a pool that timed out, on average: queued for a permit
    until the acquire deadline, or refused a new connection by the full server until then."""
    permit_timed_out_per_run: float = 0.0
    """Of those, the calls that never got a permit."""
    connections_open: float = 0.0
    """Connections open at the end of a run, all nodes' pools together, on average."""
    advisory_waiting_mean: float = 0.0
    """Orchestration fetches waiting on an instance's advisory lock (duroxide-0.2), on average."""
    faults: dict | None = None
    """With `[[faults]]`: what they did (`durosim.model.faults.report`)."""

    @property
    def throughput_per_s(self) -> float:
        return mean_ci(self.throughput_per_run)[0]

    def to_dict(self) -> dict:
        """The summary as `durosim run --json` prints it."""
        out = {
            "scenario": self.scenario,
            "runtime": self.runtime,
            "replications": self.replications,
            "completed": self.completed,
            "failed": self.failed,
            "measured": self.measured,
            "throughput_per_s": round(self.throughput_per_s, 4),
            "throughput_ci_per_s": _ci(self.throughput_per_run),
            "latency_ms": {k: _rounded(v, 2) for k, v in self.latency_ms.items()},
            "latency_ci_ms": {k: _ci(v) for k, v in self.latency_per_run_ms.items()},
            "calls_per_orchestration": {
                op: round(count, 3) for op, count in self.calls_per_orchestration.items()
            },
            "turns_per_orchestration": _rounded(self.turns_per_orchestration, 3),
            "breakdown_ms": {part: round(ms, 2) for part, ms in self.breakdown_ms.items()},
            "pool_in_use_mean": round(self.pool_in_use_mean, 3),
            "pool_waiting_mean": round(self.pool_waiting_mean, 3),
            "pool_waiting_by_caller": {
                caller: round(value, 3) for caller, value in self.pool_waiting_by_caller.items()
            },
            "db_calls_per_s": {kind: round(v, 2) for kind, v in self.db_calls_per_s.items()},
            "server_utilisation": round(self.server_utilisation, 4),
            "orchestrator_queue_mean": round(self.orchestrator_queue_mean, 3),
            "worker_queue_mean": round(self.worker_queue_mean, 3),
            "orchestration_slot_utilisation": round(self.orchestration_slot_utilisation, 4),
            "worker_slot_utilisation": round(self.worker_slot_utilisation, 4),
            "connections_open": round(self.connections_open, 2),
            "pool_timed_out_per_run": round(self.pool_timed_out_per_run, 2),
            "permit_timed_out_per_run": round(self.permit_timed_out_per_run, 2),
            "advisory_waiting_mean": round(self.advisory_waiting_mean, 3),
        }
        if self.faults is not None:
            out["faults"] = self.faults
        if self.total_per_run_s:
            out["total_s"] = round(mean(self.total_per_run_s), 3)
            out["total_ci_s"] = _ci(self.total_per_run_s)
        if self.by_workflow_ms:
            out["workflows"] = self.workflows()
        return out

    def workflows(self) -> dict[str, dict]:
        """Per workflow: completed, share of the completions, throughput and latency."""
        total = sum(len(v) for v in self.by_workflow_ms.values()) or 1
        out = {}
        for name, latencies in self.by_workflow_ms.items():
            share = len(latencies) / total
            out[name] = {
                "completed": len(latencies),
                "share": round(share, 4),
                "throughput_per_s": round(self.throughput_per_s * share, 4),
                "latency_ms": {
                    stat: round(_latency_stat(latencies, stat), 2) for stat in LATENCY_STATS
                },
            }
        return out


def _by_workflow(scenario: Scenario, runs: list[RunResult]) -> dict[str, list[float]]:
    if not scenario.workload.workflows:
        return {}
    out: dict[str, list[float]] = {}
    for run in runs:
        for name, latencies in run.latencies_by_workflow_s.items():
            out.setdefault(name, []).extend(x * 1000.0 for x in latencies)
    return dict(sorted(out.items()))


def _mean_by_key(dicts: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each key over the dicts (a key a dict lacks counts as 0)."""
    keys = sorted({key for d in dicts for key in d})
    return {key: sum(d.get(key, 0.0) for d in dicts) / len(dicts) for key in keys}


def summarize(scenario: Scenario, runs: list[RunResult]) -> Summary:
    latencies_ms = [x * 1000.0 for run in runs for x in run.latencies_s]
    done = [r.latencies_s for r in runs if r.latencies_s]
    measured = sum(r.measured for r in runs)
    calls: dict[str, float] = {}
    for run in runs:
        for op, count in run.calls.items():
            calls[op] = calls.get(op, 0.0) + count
    n = len(runs)
    return Summary(
        scenario=scenario.name,
        runtime=scenario.runtime,
        replications=n,
        completed=sum(r.completed for r in runs),
        failed=sum(r.failed for r in runs),
        measured=measured,
        latencies_ms=latencies_ms,
        latency_ms={
            stat: _latency_stat(latencies_ms, stat) if latencies_ms else None
            for stat in LATENCY_STATS
        },
        latency_per_run_ms={
            stat: [_latency_stat(x, stat) * 1000.0 for x in done] for stat in LATENCY_STATS
        },
        throughput_per_run=[r.throughput_per_s for r in runs],
        by_workflow_ms=_by_workflow(scenario, runs),
        arrivals_per_s=sum(r.arrivals_per_s for r in runs) / n,
        total_per_run_s=[r.total_s for r in runs if r.total_s is not None],
        calls_per_orchestration=(
            {op: count / measured for op, count in sorted(calls.items())} if measured else {}
        ),
        turns_per_orchestration=(
            sum(r.turns_per_orchestration * r.measured for r in runs) / measured
            if measured
            else None
        ),
        breakdown_ms=(
            {
                part: sum(r.breakdown_s.get(part, 0.0) * r.measured for r in runs)
                / measured
                * 1000.0
                for part in PARTS
            }
            if measured
            else {}
        ),
        pool_in_use_mean=sum(r.pool_in_use_mean for r in runs) / n,
        pool_waiting_mean=sum(r.pool_waiting_mean for r in runs) / n,
        pool_waiting_by_caller=_mean_by_key([r.pool_waiting_by_caller for r in runs]),
        db_calls_per_s=_mean_by_key([r.calls_per_s for r in runs]),
        server_utilisation=sum(r.server_utilisation for r in runs) / n,
        orchestrator_queue_mean=sum(r.orchestrator_queue_mean for r in runs) / n,
        worker_queue_mean=sum(r.worker_queue_mean for r in runs) / n,
        orchestration_slot_utilisation=sum(r.orchestration_slot_utilisation for r in runs) / n,
        worker_slot_utilisation=sum(r.worker_slot_utilisation for r in runs) / n,
        pool_timed_out_per_run=sum(r.pool_timed_out for r in runs) / n,
        permit_timed_out_per_run=sum(r.permit_timed_out for r in runs) / n,
        connections_open=sum(r.connections_open for r in runs) / n,
        advisory_waiting_mean=sum(r.advisory_waiting for r in runs) / n,
        faults=(
            fault_report(
                scenario.faults,
                scenario.recovery,
                [r.orchestrations for r in runs],
                [float(r.activity_reruns) for r in runs],
            )
            if scenario.faults
            else None
        ),  # fmt: skip
    )
