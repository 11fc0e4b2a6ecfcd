"""How much work a scenario is, estimated before it runs, so that a typo (a rate of 1e6/s for
1e9 s, a fan-out of 1e7, a million sweep points) is refused in one line instead of running for
days or exhausting memory. `--large` runs it anyway.

The estimate counts kernel events: each orchestration costs about `fanout` activities of three
provider calls and a few turns of two, each call about ten events; each idle dispatcher slot
polls once per poll interval (or per round trip, whichever is longer) for the simulated time.
It is a bound for planning, not a prediction: within a factor of a few of `durosim bench`'s
counts on the shipped scenarios.
"""

from __future__ import annotations

from durosim.model.scenario import Scenario
from durosim.sim.errors import InputError

MAX_EVENTS = 2e8
"""About ten minutes of one core at durosim's event rate (`durosim bench`)."""
MAX_POINTS = 10_000
"""Points in one sweep or capacity grid."""
EVENTS_PER_CALL = 10


def orchestrations(s: Scenario) -> tuple[float, float]:
    """(orchestrations, simulated seconds) of one replication, roughly."""
    w = s.workload
    rtt = max(s.network.rtt.mean, 1e-4)
    turn_s = 4 * rtt + 0.002
    if w.mode == "open":
        return w.arrival_rate_per_s * w.duration_s, w.duration_s + w.wait_timeout_s
    if w.mode == "stress":
        per_s = max(w.in_flight, 1) / (10 * turn_s + w.activity.mean)
        return per_s * w.duration_s, w.duration_s
    count = w.warmup + w.count
    return count, count * (10 * turn_s + w.activity.mean) / (
        1 if w.mode == "sequential" else w.in_flight
    )


def estimated_events(s: Scenario) -> float:
    count, simulated_s = orchestrations(s)
    w, o = s.workload, s.runtime_options
    fanout = w.fanout
    for workflow in w.workflows:
        fanout = max(fanout, len(workflow.steps))
    per_orchestration = (3 * fanout + 12) * EVENTS_PER_CALL
    slots = s.host.nodes * (o.orchestration_concurrency + o.worker_concurrency)
    poll_s = max(o.dispatcher_poll_interval_s, 2 * s.network.rtt.mean, 1e-3)
    polls = slots * simulated_s / poll_s * EVENTS_PER_CALL
    return s.replications * (count * per_orchestration + polls)


def check_size(scenario: Scenario, large: bool, times: int = 1, what: str = "") -> None:
    """Refuse a scenario (run `times` times) whose estimated work is beyond MAX_EVENTS."""
    if large:
        return
    events = estimated_events(scenario) * times
    if events > MAX_EVENTS:
        raise InputError(
            f"{what or scenario.name}: about {events:.2g} simulation events, beyond the "
            f"{MAX_EVENTS:.0g} durosim runs without asking (about ten minutes of a core); "
            "check the scenario's rate, duration, count, fan-out and nodes, or pass --large"
        )


def check_points(points: int, large: bool, what: str) -> None:
    if not large and points > MAX_POINTS:
        raise InputError(
            f"{what}: {points} points, beyond the {MAX_POINTS} durosim runs without asking; "
            "pass --large to run them anyway"
        )
