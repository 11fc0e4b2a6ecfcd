"""A baseline and its what-if variants on common random numbers: each replication of a variant
draws the same numbers as the same replication of the baseline, so their difference is measured
with far less noise than either alone; the change is the mean of the paired differences with its
95% confidence interval."""

from __future__ import annotations

import math
from collections.abc import Callable

from durosim.experiments.results import run_replications, summarize
from durosim.model.scenario import Scenario
from durosim.model.whatif import apply
from durosim.model.world import RunResult
from durosim.sim.stats import mean_ci


def _per_run(runs: list[RunResult]) -> dict[str, list[float]]:
    """Each replication's mean latency (NaN when none completed) and throughput, in replication
    order, so a variant's replication pairs with the baseline's."""

    def latency(run: RunResult) -> float:
        return sum(run.latencies_s) / len(run.latencies_s) * 1000.0 if run.latencies_s else math.nan

    return {
        "latency_mean_ms": [latency(r) for r in runs],
        "throughput_per_s": [r.throughput_per_s for r in runs],
    }


def _change(base: list[float], variant: list[float]) -> dict:
    pairs = [(b, v) for b, v in zip(base, variant) if not (math.isnan(b) or math.isnan(v))]
    if not pairs:
        return {"diff": None, "ci": None, "pct": None}
    diff, half = mean_ci([v - b for b, v in pairs])
    reference = sum(b for b, _ in pairs) / len(pairs)
    return {
        "diff": round(diff, 4),
        "ci": None if math.isnan(half) else round(half, 4),
        "pct": round(diff / reference * 100.0, 2) if reference else None,
    }


def compare(
    scenario: Scenario,
    specs: list[str],
    replications: int | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> dict:
    """Rows for the baseline and every variant (the variants built first, so a bad option fails
    before anything runs). `on_row` sees each row as it finishes; an interrupt (Ctrl-C) keeps
    the rows that finished and marks the result `interrupted`."""
    variants = [(spec, apply(scenario, spec)) for spec in specs]
    rows: list[dict] = []
    out = {"scenario": scenario.name, "rtt_ms": scenario.network.rtt.mean * 1000.0, "rows": rows}
    try:
        base_runs = run_replications(scenario, replications)
        base_per_run = _per_run(base_runs)
        rows.append(
            {"option": "baseline", **summarize(scenario, base_runs).to_dict(), "change": {}}
        )
        if on_row:
            on_row(rows[-1])
        for spec, variant in variants:
            runs = run_replications(variant, replications)
            per_run = _per_run(runs)
            row = {"option": spec, **summarize(variant, runs).to_dict()}
            row["change"] = {key: _change(base_per_run[key], per_run[key]) for key in per_run}
            rows.append(row)
            if on_row:
                on_row(row)
    except KeyboardInterrupt:
        out["interrupted"] = True
    return out
