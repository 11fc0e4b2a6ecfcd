"""Saying why a scenario collapses: pool waiters by kind of caller, DB calls per second, and the
past-saturation verdict."""

import pytest

from durosim.experiments.results import run_replications, summarize
from durosim.experiments.saturation import bottleneck, past_saturation
from durosim.model.scenario import load, shipped


def _open(rate: float, **extra: str):
    settings = [
        'workload.mode="open"', f"workload.arrival_rate_per_s={rate}", "workload.duration_s=40",
        "workload.wait_timeout_ms=20000", "network.rtt_ms=20", "replications=2",
        *(f"{k}={v}" for k, v in extra.items()),
    ]  # fmt: skip
    s = load(shipped()["lab"], settings)
    return s, summarize(s, run_replications(s))


def test_light_load_keeps_up_and_says_nothing():
    s, summary = _open(0.5)
    assert summary.failed == 0
    assert past_saturation(s, summary) is None


def test_past_saturation_the_clients_checks_hold_the_pool():
    s, summary = _open(4.0)
    verdict = past_saturation(s, summary)
    assert verdict is not None and verdict.startswith("past saturation")
    waiting = summary.pool_waiting_by_caller
    assert waiting["client"] > waiting.get("worker slots", 0) + waiting.get(
        "orchestration slots", 0
    )
    assert "clients checking their orchestration's status" in verdict


def test_waiters_by_caller_add_up_and_calls_per_second_split():
    _, summary = _open(3.0)
    assert sum(summary.pool_waiting_by_caller.values()) == pytest.approx(
        summary.pool_waiting_mean, rel=1e-9
    )
    rates = summary.db_calls_per_s
    assert rates["busy"] > 0 and rates["idle"] >= 0
    assert rates["total"] == pytest.approx(rates["busy"] + rates["idle"])


def test_without_a_queue_for_connections_the_busiest_resource_is_named():
    busy = {"pool": 0.3, "database cores": 0.1, "orchestration slots": 0.5, "worker slots": 0.97}
    assert bottleneck(busy, {"client": 0.1}) == "the worker slots, 97% busy"
    assert bottleneck(busy, {"client": 2.0, "worker slots": 1.0}).startswith(
        "the connection pool: 3.0 callers wait"
    )


def test_the_timeline_shows_who_waits_for_a_connection():
    from durosim.model.world import simulate
    from durosim.plots.timeline import timeline

    s, _ = _open(4.0)
    records = simulate(s, 0, keep_records=True).records
    waited = [r for r in records if r.get("type") == "call" and r["acquired_ms"] > r["start_ms"]]
    assert waited, "past saturation calls wait for connections"
    late = max(
        (r for r in records if r.get("type") == "orchestration" and "status" not in r),
        key=lambda r: r["start_ms"],
    )
    figure = timeline(records, late["instance"])
    lanes, waiting = figure.axes[:2]
    assert waiting.get_ylabel().startswith("waiting for")
    assert {t.get_text() for t in waiting.get_legend().get_texts()} >= {"client"}

    light, _ = _open(0.3)
    calm = simulate(light, 0, keep_records=True).records
    first = next(r for r in calm if r.get("type") == "orchestration")
    calls = [r for r in calm if r.get("type") == "call"]
    # at light load a call finds a free connection (all but a chance burst of client checks: 1
    # of about 1,600 in this run), past saturation nearly every call waits (9,164 of 9,768)
    assert sum(r["acquired_ms"] > r["start_ms"] for r in calls) <= len(calls) / 500
    assert len(waited) > len(calls)
    assert len(timeline(calm, first["instance"]).axes) == 1, "no waiting, no waiting panel"
