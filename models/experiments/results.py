"""Replications of one scenario reduced to what a user asks first: latency percentiles,
throughput, completions, DB calls and turns per orchestration, and where the time goes, each
mean with the half-width of its 95% confidence interval across replications."""

from __future__ import annotations

import math

from durosim.model.breakdown import PARTS
from durosim.model.scenario import Scenario
from durosim.model.world import RunResult, simulate
from durosim.sim.stats import mean_ci, percentile


def run_replications(scenario: Scenario, replications: int | None = None) -> list[RunResult]:
    return [simulate(scenario, rep) for rep in range(replications or scenario.replications)]


def _ci(values: list[float]) -> float | None:
    half = mean_ci(values)[1]
    return None if math.isnan(half) else round(half, 4)


def summarize(scenario: Scenario, runs: list[RunResult]) -> dict:
    latencies_ms = [x * 1000.0 for run in runs for x in run.latencies_s]
    per_run = {
        "mean": [sum(r.latencies_s) / len(r.latencies_s) * 1000.0 for r in runs if r.latencies_s],
        "p50": [percentile(r.latencies_s, 50) * 1000.0 for r in runs if r.latencies_s],
        "p95": [percentile(r.latencies_s, 95) * 1000.0 for r in runs if r.latencies_s],
        "p99": [percentile(r.latencies_s, 99) * 1000.0 for r in runs if r.latencies_s],
    }
    measured = sum(r.measured for r in runs)
    calls: dict[str, float] = {}
    for run in runs:
        for op, count in run.calls.items():
            calls[op] = calls.get(op, 0.0) + count
    throughputs = [r.throughput_per_s for r in runs]
    out = {
        "scenario": scenario.name,
        "runtime": scenario.runtime,
        "replications": len(runs),
        "completed": sum(r.completed for r in runs),
        "failed": sum(r.failed for r in runs),
        "measured": measured,
        "throughput_per_s": round(mean_ci(throughputs)[0], 4),
        "throughput_ci_per_s": _ci(throughputs),
        "latency_ms": {
            "mean": round(sum(latencies_ms) / len(latencies_ms), 2) if latencies_ms else None,
            "p50": round(percentile(latencies_ms, 50), 2) if latencies_ms else None,
            "p95": round(percentile(latencies_ms, 95), 2) if latencies_ms else None,
            "p99": round(percentile(latencies_ms, 99), 2) if latencies_ms else None,
        },
        "latency_ci_ms": {k: _ci(v) for k, v in per_run.items()},
        "calls_per_orchestration": {
            op: round(count / measured, 3) for op, count in sorted(calls.items())
        }
        if measured
        else {},
        "turns_per_orchestration": round(
            sum(r.turns_per_orchestration * r.measured for r in runs) / measured, 3
        )
        if measured
        else None,
        "breakdown_ms": {
            part: round(
                sum(r.breakdown_s.get(part, 0.0) * r.measured for r in runs) / measured * 1000.0, 2
            )
            for part in PARTS
        }
        if measured
        else {},
        "pool_in_use_mean": round(sum(r.pool_in_use_mean for r in runs) / len(runs), 3),
        "pool_waiting_mean": round(sum(r.pool_waiting_mean for r in runs) / len(runs), 3),
        "server_utilisation": round(sum(r.server_utilisation for r in runs) / len(runs), 4),
        "orchestrator_queue_mean": round(
            sum(r.orchestrator_queue_mean for r in runs) / len(runs), 3
        ),
        "worker_queue_mean": round(sum(r.worker_queue_mean for r in runs) / len(runs), 3),
        "orchestration_slot_utilisation": round(
            sum(r.orchestration_slot_utilisation for r in runs) / len(runs), 4
        ),
        "worker_slot_utilisation": round(
            sum(r.worker_slot_utilisation for r in runs) / len(runs), 4
        ),
    }
    totals = [r.total_s for r in runs if r.total_s is not None]
    if totals:
        out["total_s"] = round(sum(totals) / len(totals), 3)
        out["total_ci_s"] = _ci(totals)
    return out
