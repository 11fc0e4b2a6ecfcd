"""Capacity planning: the highest arrival rate a deployment sustains within a latency objective,
the knee of its throughput-latency curve, and the resource that saturates first.

Load is open-loop (Poisson arrivals, whatever is in flight), the way production traffic comes.
A rate is sustained when the objective's percentile of the orchestrations that arrived after the
warm-up holds and none timed out. The search walks rates up geometrically until the objective
fails, then bisects. The resource reported as saturating first is the one busiest at the highest
sustained rate: connections in use per pool, database cores, orchestration slots, worker slots.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from durosim.experiments.results import run_replications, summarize
from durosim.experiments.saturation import RESOURCES, bottleneck, utilisation
from durosim.experiments.size import MAX_EVENTS, estimated_events
from durosim.model.scenario import Scenario
from durosim.sim.config import ConfigError
from durosim.sim.stats import percentile

_SLO = re.compile(
    r"^\s*(?:([\w.-]+)\s*:\s*)?(mean|p50|p90|p95|p99)\s*(<=|<)\s*([0-9.]+)\s*(ms|s)\s*$"
)


@dataclass(frozen=True, slots=True)
class Objective:
    metric: str
    limit_ms: float
    text: str
    workflow: str = ""
    """The workflow the objective is for (`order:p95<2s`); empty: every orchestration."""

    def met(self, latencies_ms: list[float]) -> bool:
        if not latencies_ms:
            return False
        if self.metric == "mean":
            value = sum(latencies_ms) / len(latencies_ms)
        else:
            value = percentile(latencies_ms, float(self.metric[1:]))
        return value < self.limit_ms


def parse_slo(text: str) -> Objective:
    match = _SLO.match(text)
    if match is None:
        raise ConfigError(
            f"--slo {text!r}: expected [WORKFLOW:]METRIC<VALUE with a unit, e.g. p95<2s, "
            "p99<500ms or order:p95<10s (metrics: mean, p50, p90, p95, p99)"
        )
    workflow, metric, _, value, unit = match.groups()
    limit = float(value) * (1000.0 if unit == "s" else 1.0)
    if not math.isfinite(limit) or limit <= 0:
        raise ConfigError(f"--slo {text!r}: the limit must be a finite time > 0")
    return Objective(metric, limit, text.strip(), workflow or "")


def check_objective(objective: Objective, scenario: Scenario) -> None:
    """An objective for a workflow needs a scenario that starts it."""
    if not objective.workflow:
        return
    started = [w.name for w in scenario.workload.workflows if w.weight is not None]
    if objective.workflow not in started:
        raise ConfigError(
            f"--slo {objective.text!r}: no started workflow {objective.workflow!r}; "
            f"the scenario starts {', '.join(started) or 'only its fan-out'}"
        )


def open_load(
    scenario: Scenario, rate_per_s: float, duration_s: float, warmup_s: float
) -> Scenario:
    workload = replace(
        scenario.workload, mode="open", arrival_rate_per_s=rate_per_s, arrival_trace="",
        duration_s=duration_s, warmup_s=warmup_s,
    )  # fmt: skip
    return replace(scenario, workload=workload)


def evaluate(scenario: Scenario, rate: float, objective: Objective, replications: int,
             duration_s: float, warmup_s: float) -> dict:  # fmt: skip
    s = open_load(scenario, rate, duration_s, warmup_s)
    summary = summarize(s, run_replications(s, replications))
    busy = utilisation(s, summary)
    row = summary.to_dict()
    return {
        "rate_per_s": rate,
        "throughput_per_s": row["throughput_per_s"],
        "latency_ms": row["latency_ms"],
        "failed": summary.failed,
        "utilisation": {k: round(v, 4) for k, v in busy.items()},
        "pool_waiting_by_caller": row["pool_waiting_by_caller"],
        **({"workflows": row["workflows"]} if "workflows" in row else {}),
        "waits_for": bottleneck(busy, summary.pool_waiting_by_caller),
        "met": objective.met(
            summary.by_workflow_ms.get(objective.workflow, [])
            if objective.workflow
            else summary.latencies_ms
        )
        and summary.failed == 0,
    }


def knee(points: list[dict], metric: str = "p95") -> dict | None:
    """The point of the throughput-latency curve farthest from the chord joining its ends
    (the 'Kneedle' rule), on normalised axes."""
    usable = [p for p in points if p["latency_ms"][metric] is not None]
    if len(usable) < 3:
        return None
    xs = [p["throughput_per_s"] for p in usable]
    ys = [p["latency_ms"][metric] for p in usable]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0 or y1 == y0:
        return None
    norm = [((x - x0) / (x1 - x0), (y - y0) / (y1 - y0)) for x, y in zip(xs, ys)]
    (ax, ay), (bx, by) = norm[0], norm[-1]
    length = math.hypot(bx - ax, by - ay) or 1.0
    distances = [abs((bx - ax) * (ay - y) - (ax - x) * (by - ay)) / length for x, y in norm]
    return usable[max(range(len(usable)), key=distances.__getitem__)]


def capacity(
    scenario: Scenario,
    objective: Objective,
    replications: int = 3,
    duration_s: float = 60.0,
    warmup_s: float = 10.0,
    start_rate: float | None = None,
    max_rate: float = 5000.0,
    bisections: int = 6,
    on_point: Callable[[dict], None] | None = None,
    max_events: float | None = MAX_EVENTS,
) -> dict:
    """The search starts where about 10 orchestrations arrive after the warm-up. `on_point`
    sees each tried rate as it finishes; an interrupt (Ctrl-C) ends the search with what it
    found so far, marked `interrupted`. A rate whose replications are estimated beyond
    `max_events` simulation events (None: no limit) is not tried: the search ends there,
    marked `stopped` with the estimate."""
    points: list[dict] = []
    rate = start_rate or 10.0 / (duration_s - warmup_s)
    best = worst = None
    interrupted = False
    stopped = None

    class TooLarge(Exception):
        pass

    def tried(rate: float) -> dict:
        nonlocal stopped
        load = replace(open_load(scenario, rate, duration_s, warmup_s), replications=replications)
        events = estimated_events(load)
        if max_events is not None and events > max_events:
            stopped = (
                f"{rate:.4g}/s was not tried: about {events:.2g} simulation events, beyond the "
                f"{max_events:.0g} durosim runs without asking; pass --large, or lower "
                "--duration-s or --replications"
            )
            raise TooLarge
        point = evaluate(scenario, rate, objective, replications, duration_s, warmup_s)
        points.append(point)
        if on_point:
            on_point(point)
        return point

    try:
        while rate <= max_rate:
            point = tried(rate)
            if not point["met"]:
                worst = point
                break
            best = point
            rate *= 2.0
        if best is not None and worst is not None:
            lo, hi = best["rate_per_s"], worst["rate_per_s"]
            for _ in range(bisections):
                mid = math.sqrt(lo * hi)
                point = tried(mid)
                if point["met"]:
                    lo, best = mid, point
                else:
                    hi = mid
    except KeyboardInterrupt:
        interrupted = True
    except TooLarge:
        pass
    points.sort(key=lambda p: p["rate_per_s"])
    saturating = None
    if best is not None:
        saturating = max(RESOURCES, key=lambda k: best["utilisation"][k])
    missed = [p for p in points if not p["met"]]
    return {
        **({"interrupted": True} if interrupted else {}),
        **({"stopped": stopped} if stopped else {}),
        "slo": objective.text,
        "max_rate_per_s": None if best is None else round(best["rate_per_s"], 4),
        "at_max": best,
        "saturates_first": saturating,
        "beyond": missed[0] if missed else None,
        "knee": knee(points, objective.metric if objective.metric != "mean" else "p50"),
        "points": points,
    }
