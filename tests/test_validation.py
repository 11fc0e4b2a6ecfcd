"""The model against real measurements (traces/): each prediction within its tolerance.

Tolerances (durosim.evidence.validate.tolerance_pct) are the project's targets: at RTT >= 20 ms
mean, p50 and throughput within 10% and p95 within 15%; below 20 ms, where the 100 ms poll quantises
latency and two real runs differ by up to 20%, 25%. Known gaps are strict xfails: each says why,
and the test fails once the gap closes so the report gets updated.
"""

from pathlib import Path

import pytest

from durosim.evidence.trace_format import TraceError, read_trace
from durosim.evidence.validate import compare, cross_checks, predict, scenario_for
from durosim.sim.config import ConfigError
from durosim.sim.stats import percentile

TRACES = Path(__file__).resolve().parent.parent / "traces"
LAB = sorted((TRACES / "lab").glob("*.jsonl"))
RECORDED = sorted((TRACES / "recorded").rglob("*.jsonl"))
PUBLISHED = TRACES / "published"

KNOWN_GAPS = {
    "rtt0_f5_2x2_seq_poll10": "recorded on an idle machine: at loopback the per-call CPU costs "
    "(calibrated on the loaded lab machine) dominate, and the real calls were ~30% cheaper",
    "rtt20_f5_2x2_open2_act10": "near the knee the real median stays at its light-load value "
    "(838 ms, 785 at 1/s) while the model's rises to ~990 ms (+18%); mean and p95 within 8%",
    "rtt20_f5_2x2_open2.5_act10": "near the knee, as open2: the model's median is 11% high, on "
    "the edge (+9.5% before a connection cost the server its backend, +10.7% with 30 "
    "replications); mean, p95 and throughput within 5%, failures within 4%",
    "rtt20_f5_2x2_open3_act10": "past the knee (148 orchestrations timed out, predicted 149) the "
    "model's median is 11-14% low (10.2% with fetches that skip a claimed instance at once, as "
    "before the advisory-lock wait was modelled); mean, p95 and throughput within 8%",
}
# The one-core series (`durosim record --db-cores 1 --nodes N`, poll 10 ms, loopback): the
# server's CPU busy is predicted within 10 points at every size, the measured node's latency is
# not (docs/validation-real.md, README "The database as the bottleneck").
for _idle, _mean in ((0, 45), (1, 44), (2, 69), (4, 78), (8, 85), (16, 59)):
    KNOWN_GAPS[f"rtt0_f5_2x2_seq_poll10_db1_idle{_idle:02d}"] = (
        f"{_idle} idle nodes beside the measured one, the server on one core: server CPU within "
        f"10 points, the mean latency ~{_mean}% low; on the saturated core a statement of a few "
        "ms (a claiming fetch, an ack) took 50-190 ms while empty polls took 3 ms, where the "
        "model serves statements first come, first served"
    )
KNOWN_GAPS["rtt20_f5_2x2_open2_act10_db8"] = (
    "at 2/s, the node's capacity, the latency before and after the outage is 13-17% low (the "
    "knee, as open2); 2 activities ran again against the model's 0.5 a run; the same outage at "
    "1/s (open1_act10_db8) is within tolerance"
)
KNOWN_GAPS["rtt20_f5_2x2_open2_act10_nodes2_crash"] = (
    "at 2/s the node left after the crash runs at its capacity (1.94/s): the measured p95 stays "
    "near the objective for 25 s, the model's for 3 s (mean latency 28% low, the knee); the "
    "crash at 0.7/s (open0.7_act200_nodes2_crash) is on the edge of its tolerance"
)
KNOWN_GAPS["rtt20_f5_2x2_open0.7_act200_nodes2_crash"] = (
    "a node crashes and its work waits out its 30 s locks: the mean latency is 10% high, on the "
    "edge of its noise (+9.7% with 40 replications, +7.6% with 40 before a connection cost the "
    "server its backend); p95 and throughput within 5%"
)
KNOWN_GAPS["rtt0_f5_2x2_seq_poll10_db1_idle08_waits"] = (
    "8 idle nodes, pg_stat_activity sampled: 9.9 orchestration fetches wait on the advisory lock "
    "against the model's ~3.0, the mean latency ~87% low (as idle08)"
)


def test_there_are_traces_to_check():
    assert len(LAB) >= 4 and len(RECORDED) >= 10


@pytest.mark.parametrize("path", LAB + RECORDED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_prediction_within_tolerance(path, request):
    if path.stem in KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_GAPS[path.stem], strict=True))
    result = compare(read_trace(path))
    assert result.ok, (result.errors_pct, result.tolerances_pct)


def published(name: str):
    return read_trace(PUBLISHED / f"{name}.jsonl")


def test_published_rows_do_not_fit_their_stated_rtt():
    """At the stated 152 ms the model is far too slow: the stated RTT is not the effective one."""
    result = compare(published("azure-152ms-2x2"), replications=4)
    assert result.errors_pct["throughput_per_s"] < -30


@pytest.mark.parametrize("site", ["azure-152ms", "azure-westus-70ms"])
def test_rtt_inferred_from_one_row_predicts_the_other(site):
    traces = [published(f"{site}-2x2"), published(f"{site}-4x4")]
    comparisons = [compare(t, replications=6, infer=True) for t in traces]
    assert all(c.ok for c in comparisons)
    inferred = [c.inferred_rtt_ms for c in comparisons]
    assert abs(inferred[0] - inferred[1]) / inferred[0] < 0.1
    checks = cross_checks(comparisons, traces, None, 10)
    assert len(checks) == 2
    assert all(check.ok for check in checks), [(c.source, c.error_pct) for c in checks]


def test_local_docker_rows():
    """1:1 is predicted within 10% from the RTT inferred from 2:2, and 4:4 comes out slower than
    2:2, as measured, through the seed-era fetch deadlocks."""
    two, one, four = (published(f"local-docker-{n}") for n in ("2x2", "1x1", "4x4"))
    inferred = compare(two, replications=6, infer=True)
    checks = cross_checks([inferred], [two], None, 10)
    assert checks == []  # a site needs two rows
    rtt = inferred.inferred_rtt_ms
    one_predicted, _, _ = predict(scenario_for(one, None, rtt), 10, True)
    measured = one.summaries[0].throughput_per_s
    assert abs(one_predicted["throughput_per_s"] - measured) / measured < 0.10
    two_predicted, _, _ = predict(scenario_for(two, None, rtt), 10, True)
    four_predicted, extra, _ = predict(scenario_for(four, None, rtt), 10, True)
    assert four_predicted["throughput_per_s"] < two_predicted["throughput_per_s"]
    assert extra["deadlocks_per_run"] > 1


def test_validation_fails_on_empty_input(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(TraceError, match="empty file"):
        read_trace(empty)
    header_only = tmp_path / "header.jsonl"
    header_only.write_text('{"format": "durosim-trace/1", "conditions": {"rtt_ms": 5}}\n')
    with pytest.raises(TraceError, match="no orchestration, summary or call records"):
        read_trace(header_only)


def test_a_trace_of_warmups_only_cannot_be_compared(tmp_path):
    path = tmp_path / "warm.jsonl"
    path.write_text(
        '{"format": "durosim-trace/1", "conditions": {"rtt_ms": 5}}\n'
        '{"type": "orchestration", "instance": "a", "start_ms": 0, "end_ms": 5, "warmup": true}\n'
    )
    with pytest.raises(ConfigError, match="warm-up"):
        compare(read_trace(path))


def test_calibrating_on_a_runs_own_log_predicts_it(tmp_path):
    """The RTT-75 run's p50 sits on the edge between two client-check clusters (with the lab's
    per-call costs it is within tolerance at 10 replications, +15% at 30); fitted to its own
    call records (`durosim calibrate`), the model predicts it within tolerance."""
    from durosim.evidence.calibrate import fit, from_trace, scenario_toml

    trace = read_trace(TRACES / "recorded" / "rtt75_f5_2x2_seq_calls.jsonl")
    fitted = fit(from_trace(trace))
    assert fitted.rtt_ms == pytest.approx(trace.conditions["rtt_ms"], rel=0.05)
    base = tmp_path / "fitted.toml"
    base.write_text(scenario_toml(fitted))
    result = compare(trace, base=base)
    assert result.ok, result.errors_pct


def test_provider_calls_by_kind_at_rtt_25_within_10_percent():
    """What sizes a database: calls per orchestration by kind, empty polls included, against a
    real debug log (`durosim record --calls`, RTT 25 ms)."""
    result = compare(read_trace(TRACES / "recorded" / "rtt25_f5_2x2_seq_calls.jsonl"))
    calls = result.extra["calls_per_orchestration"]
    assert {"fetch_orchestration_item (empty)", "fetch_work_item (empty)"} <= set(calls)
    for op, row in calls.items():
        assert row["measured"] > 0, f"{op}: the model makes a call the runtime does not"
        assert abs(row["error_pct"]) <= 10.0, (op, row)


def _real_capacity(limit_ms: float = 2000.0, warmup_s: float = 10.0) -> tuple[float, float]:
    """The real runtime's highest rate within p95 < 2 s and the lowest rate that missed it,
    judged as `durosim capacity` judges a tried rate (the orchestrations arriving after the
    first 10 s: p95 under the limit and none failed)."""
    runs = sorted((TRACES / "recorded" / "capacity").glob("*.jsonl"))
    runs.append(TRACES / "recorded" / "rtt20_f5_2x2_open2_act10.jsonl")
    met, missed = [], []
    for path in runs:
        trace = read_trace(path)
        first = min(o.start_ms for o in trace.orchestrations if not o.warmup)
        late = [
            o for o in trace.orchestrations if not o.warmup and o.start_ms - first >= 1e3 * warmup_s
        ]
        done = [o.latency_ms for o in late if o.completed]
        ok = all(o.completed for o in late) and percentile(done, 95) < limit_ms
        (met if ok else missed).append(trace.conditions["arrival_rate_per_s"])
    return max(met), min(missed)


def test_capacity_against_the_real_runtime_within_10_percent():
    """p95 < 2 s at RTT 20 ms, fan-out 5, 10 ms activities, 2:2, pool 10: the real runtime's
    highest sustained rate, bisected with short recorded runs, against `durosim capacity`."""
    from durosim.experiments.capacity import capacity, parse_slo
    from durosim.model.scenario import load, shipped

    highest_met, lowest_missed = _real_capacity()
    assert highest_met < lowest_missed <= highest_met * 1.1, "the real bracket is narrow"
    rtt = read_trace(TRACES / "recorded" / "rtt20_f5_2x2_open2_act10.jsonl").conditions["rtt_ms"]
    scenario = load(
        shipped()["lab"],
        [f"network.rtt_ms={rtt}", "workload.activity_ms=10", "workload.wait_timeout_ms=30000"],
    )
    found = capacity(scenario, parse_slo("p95<2s"))["max_rate_per_s"]
    real = (highest_met + lowest_missed) / 2.0
    assert abs(found - real) / real <= 0.10, (found, highest_met, lowest_missed)
