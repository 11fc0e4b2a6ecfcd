"""Why a scenario past saturation collapses, in one line: the resource its work waits for.

Under open-loop arrivals past capacity the backlog grows, and every waiting client polls its
orchestration's status (two calls a check, duroxide 0.2) on the same pool the dispatchers use
(dx-cur `client/mod.rs`; the SDK's `Client(provider)` shares the provider). Once the pool's
waiters are mostly those checks, the dispatchers get a connection ever later, the work they
would finish slows, and more clients wait: throughput falls below what the runtime served before.
So the line names the pool's waiters by kind of caller when there is a queue for connections,
and otherwise the busiest of the pool, the database's cores and the dispatcher slots.
"""

from __future__ import annotations

from durosim.experiments.results import Summary
from durosim.model.scenario import Scenario

RESOURCES = ("pool", "database cores", "orchestration slots", "worker slots")
POOL_QUEUE = 0.5
"""Callers waiting for a connection on average above which the pool is what work waits for."""


def utilisation(scenario: Scenario, summary: Summary) -> dict[str, float]:
    """How busy each resource was on average, 0..1 (the pool: connections in use of its size)."""
    return {
        "pool": summary.pool_in_use_mean / scenario.pool.size,
        "database cores": summary.server_utilisation,
        "orchestration slots": summary.orchestration_slot_utilisation,
        "worker slots": summary.worker_slot_utilisation,
    }


def bottleneck(busy: dict[str, float], waiting_by_caller: dict[str, float]) -> str:
    """What the work waits for, as a phrase."""
    waiting = sum(waiting_by_caller.values())
    if waiting >= POOL_QUEUE:
        parts = ", ".join(
            f"{caller} {count:.1f}"
            for caller, count in sorted(waiting_by_caller.items(), key=lambda kv: -kv[1])
            if count >= 0.05
        )
        top = max(waiting_by_caller, key=waiting_by_caller.__getitem__)
        share = waiting_by_caller[top] / waiting
        text = (
            f"the connection pool: {waiting:.1f} callers wait for a connection on average ({parts})"
        )
        if top == "client" and share >= 0.5:
            text += (
                "; most are clients checking their orchestration's status, which take connections "
                "the dispatchers need to finish the work"
            )
        return text
    top = max(RESOURCES, key=busy.__getitem__)
    return f"the {top}, {busy[top] * 100:.0f}% busy"


def past_saturation(scenario: Scenario, summary: Summary) -> str | None:
    """Open loop: a line saying the scenario is past saturation and why, or None when it keeps
    up (every arrival completed within the wait timeout, and with Poisson arrivals the
    throughput within 10% of the rate that really arrived). Not with faults: what they leave
    undone is theirs, and their report says it."""
    w = scenario.workload
    if w.mode != "open" or scenario.faults:
        return None
    offered = None if w.arrival_trace else w.arrival_rate_per_s
    short = offered is not None and summary.throughput_per_s < 0.9 * summary.arrivals_per_s
    if not summary.failed and not short:
        return None
    served = f"{summary.throughput_per_s:.3g}/s served"
    if offered is not None:
        served += f" of {offered:g}/s offered"
    per_run = summary.failed / summary.replications
    lost = f", {per_run:.3g} a run not completed within the wait timeout" if per_run else ""
    why = bottleneck(utilisation(scenario, summary), summary.pool_waiting_by_caller)
    return f"past saturation ({served}{lost}): the work waits for {why}"
