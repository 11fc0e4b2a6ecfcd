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

from durosim.experiments.results import summarize
from durosim.experiments.saturation import RESOURCES, bottleneck, utilisation
from durosim.experiments.size import MAX_EVENTS, estimated_events
from durosim.model.scenario import Scenario
from durosim.model.world import Doomed, RunResult, arrival_times, simulate
from durosim.sim.config import ConfigError
from durosim.sim.rng import Streams
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

    def value(self, latencies_ms: list[float]) -> float:
        if not latencies_ms:
            return math.inf
        if self.metric == "mean":
            return sum(latencies_ms) / len(latencies_ms)
        return percentile(latencies_ms, float(self.metric[1:]))

    def met(self, latencies_ms: list[float]) -> bool:
        return self.value(latencies_ms) < self.limit_ms

    def margin(self, latencies_ms: list[float]) -> float:
        """How far the metric is from the limit, as a factor >= 1 either way."""
        value = self.value(latencies_ms)
        if value <= 0:
            return math.inf
        return max(value / self.limit_ms, self.limit_ms / value)


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


def _replicate(scenario: Scenario, replication: int, doomed: Doomed) -> tuple[int, RunResult]:
    return replication, simulate(scenario, replication, doomed=doomed)


def doomed_at(s: Scenario, objective: Objective, replications: int) -> Doomed:
    """When a replication of `s` has certainly missed `objective`, whatever the others do: a
    failure, or more orchestrations slower than the limit than the objective's percentile of
    all the measured arrivals of every replication allows (two more, for the interpolation).
    The arrivals are drawn before a run starts, so their number is known."""
    if objective.metric == "mean" or objective.workflow:
        return Doomed(objective.limit_ms / 1000.0)
    arrivals = sum(
        sum(1 for at in arrival_times(s, Streams(s.seed, rep)) if at >= s.workload.warmup_s)
        for rep in range(replications)
    )
    share = 1.0 - float(objective.metric[1:]) / 100.0
    return Doomed(objective.limit_ms / 1000.0, math.ceil(share * arrivals) + 2)


def _runs(s: Scenario, replications: range, runner, doomed: Doomed) -> list[RunResult]:
    """Replications of `s`, on `runner` (an entered executor) when given; in replication order
    whatever order they finish in, so the result does not depend on the executor."""
    if runner is None or runner.workers == 1 or len(replications) == 1:
        return [simulate(s, rep, doomed=doomed) for rep in replications]
    calls = [(s, rep, doomed) for rep in replications]
    done = dict(runner.map_unordered(_replicate, calls))
    return [done[rep] for rep in replications]


def evaluate(scenario: Scenario, rate: float, objective: Objective, replications: int,
             duration_s: float, warmup_s: float, runner=None,
             runs: list[RunResult] | None = None) -> dict:  # fmt: skip
    """A rate's point from `replications` runs: `runs` already simulated (the first ones) are
    kept and only the rest simulated."""
    s = open_load(scenario, rate, duration_s, warmup_s)
    runs = list(runs or [])
    if not any(run.stopped_early_s is not None for run in runs):
        doomed = doomed_at(s, objective, replications)
        runs += _runs(s, range(len(runs), replications), runner, doomed)
    stopped = [run.stopped_early_s for run in runs if run.stopped_early_s is not None]
    summary = summarize(s, runs)
    busy = utilisation(s, summary)
    row = summary.to_dict()
    latencies = (
        summary.by_workflow_ms.get(objective.workflow, [])
        if objective.workflow
        else summary.latencies_ms
    )
    return {
        "rate_per_s": rate,
        "throughput_per_s": row["throughput_per_s"],
        "latency_ms": row["latency_ms"],
        "failed": summary.failed,
        "utilisation": {k: round(v, 4) for k, v in busy.items()},
        "pool_waiting_by_caller": row["pool_waiting_by_caller"],
        **({"workflows": row["workflows"]} if "workflows" in row else {}),
        "waits_for": bottleneck(busy, summary.pool_waiting_by_caller),
        "met": objective.met(latencies) and summary.failed == 0 and not stopped,
        "replications": len(runs),
        **({"stopped_early_s": round(min(stopped), 3)} if stopped else {}),
        "_margin": objective.margin(latencies),
        "_runs": runs,
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


PILOT_MARGIN = 1.5
"""A first replication whose objective metric is this factor beyond the limit (or within it by
the same factor) decides its rate alone; a closer one runs the remaining replications."""


def first_rate(scenario: Scenario, duration_s: float, warmup_s: float) -> float:
    """Where the search starts: a quarter of a rough bound on the throughput (the worker and the
    orchestration slots, each call two round trips), and at least about 10 arrivals after the
    warm-up. Only the number of rates tried depends on it, not the answer."""
    w, o, nodes = scenario.workload, scenario.runtime_options, scenario.host.nodes
    call_s = 2 * scenario.network.rtt.mean + scenario.call_overhead_s + 0.001
    fanout = max([w.fanout] + [len(f.steps) for f in w.workflows])
    workers = nodes * o.worker_concurrency / (fanout * (w.activity.mean + 3 * call_s))
    orchestrators = nodes * o.orchestration_concurrency / ((fanout + 2) * 2 * call_s)
    return max(min(workers, orchestrators) / 4, 10.0 / (duration_s - warmup_s))


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
    runner=None,
) -> dict:
    """The highest rate within `objective`: bracket it by doubling (or halving) from
    `start_rate` (default `first_rate`), then bisect the bracket `bisections` times in log
    rate. Each rate runs one replication first; the rest (`replications` in all, on `runner`
    when given) only when that one is close to the limit (`PILOT_MARGIN`) or its rate would be
    the answer, so every rate reported as met has all its replications.

    `on_point` sees each tried rate as it finishes; an interrupt (Ctrl-C) ends the search with
    what it found so far, marked `interrupted`. A rate whose replications are estimated beyond
    `max_events` simulation events (None: no limit) is not tried: the search ends there, marked
    `stopped` with the estimate."""
    tried_points: dict[float, dict] = {}
    lowest = start_rate or min(first_rate(scenario, duration_s, warmup_s), max_rate)
    interrupted = False
    stopped = None

    class TooLarge(Exception):
        pass

    def check(rate: float) -> None:
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

    def tried(rate: float, full: bool = False) -> dict:
        """The rate's point: one replication, or all of them when it is close or `full`."""
        point = tried_points.get(rate)
        if point is not None and (point["replications"] == replications or not full):
            return point
        check(rate)
        if point is None:
            point = evaluate(scenario, rate, objective, 1, duration_s, warmup_s, runner)
        if (
            point["replications"] < replications
            and "stopped_early_s" not in point
            and (full or point["_margin"] < PILOT_MARGIN)
        ):
            point = evaluate(scenario, rate, objective, replications, duration_s, warmup_s,
                             runner, point["_runs"])  # fmt: skip
        tried_points[rate] = point
        if on_point:
            on_point(_public(point))
        return point

    best = worst = None
    try:
        rate = lowest
        point = tried(rate)
        if point["met"]:
            while point["met"]:
                best = point
                rate *= 2.0
                if rate > max_rate:
                    break
                point = tried(rate)
            if not point["met"]:
                worst = point
        else:
            floor = start_rate or 10.0 / (duration_s - warmup_s)
            while not point["met"] and rate / 2.0 >= floor:
                worst = point
                rate /= 2.0
                point = tried(rate)
            if point["met"]:
                best = point
        for _ in range(8):  # almost always once: a rate met by one replication holds
            if best is None:
                break
            if worst is not None:
                lo, hi = best["rate_per_s"], worst["rate_per_s"]
                for _ in range(bisections):
                    mid = math.sqrt(lo * hi)
                    point = tried(mid)
                    if point["met"]:
                        lo, best = mid, point
                    else:
                        hi, worst = mid, point
            # the answer has all its replications; if they miss, bisect below it again
            best = tried(best["rate_per_s"], full=True)
            if best["met"]:
                break
            worst = best
            below = [p for r, p in tried_points.items() if p["met"] and r < worst["rate_per_s"]]
            best = max(below, key=lambda p: p["rate_per_s"]) if below else None
            bisections = max(1, bisections // 2)
    except KeyboardInterrupt:
        interrupted = True
    except TooLarge:
        pass
    points = [_public(p) for _, p in sorted(tried_points.items())]
    at_max = None if best is None or not best["met"] else _public(best)
    saturating = None
    if at_max is not None:
        saturating = max(RESOURCES, key=lambda k: at_max["utilisation"][k])
    missed = [
        p
        for p in points
        if not p["met"] and (at_max is None or p["rate_per_s"] > at_max["rate_per_s"])
    ]
    return {
        **({"interrupted": True} if interrupted else {}),
        **({"stopped": stopped} if stopped else {}),
        "slo": objective.text,
        "max_rate_per_s": None if at_max is None else round(at_max["rate_per_s"], 4),
        "at_max": at_max,
        "saturates_first": saturating,
        "beyond": missed[0] if missed else None,
        "knee": knee(points, objective.metric if objective.metric != "mean" else "p50"),
        "points": points,
    }


def _public(point: dict) -> dict:
    return {k: v for k, v in point.items() if not k.startswith("_")}
