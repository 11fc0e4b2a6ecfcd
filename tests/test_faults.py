"""Faults in a scenario: the database down, a link held, a node crashed; what the runtime does
about them (retries, back-off, failed acks, locks that expire, activities run again), results
over time and the recovery time, and bad fault tables refused in one line."""

import json
import math

import pytest

from durosim.model.faults import Bucket, buckets, default_slo_ms, recovery_s
from durosim.model.scenario import load
from durosim.model.world import simulate
from durosim.sim.config import ConfigError
from durosim.sim.faults import LinkFaults, LinkWindow, Outages
from tests.test_record import run as invoke

OPEN = [
    'workload.mode="open"',
    "workload.duration_s=40",
    "workload.arrival_rate_per_s=1",
    "network.rtt_ms=20",
    "workload.activity_ms=10",
    "workload.wait_timeout_ms=90000",
]


def scenario(*extra: str):
    return load("lab", [*OPEN, *extra])


def ends(result) -> list[tuple[float, float, bool]]:
    return sorted(result.orchestrations)


def test_a_fault_after_the_last_call_changes_nothing_before_it():
    """The path a run with faults takes draws the same numbers in the same order."""
    plain = simulate(scenario("workload.duration_s=20"), 0, keep_records=True)
    late = simulate(
        scenario("workload.duration_s=20", 'faults=[{kind="link", start_s=19.99, '
                 'duration_ms=1, added_ms=0.001}]'), 0, keep_records=True,
    )  # fmt: skip
    before = [r for r in plain.records if r["type"] == "orchestration" and r["end_ms"] < 19990]
    assert before and before == [
        r for r in late.records if r["type"] == "orchestration" and r["end_ms"] < 19990
    ]


def test_orchestrations_wait_out_a_database_that_refuses_connections():
    """sqlx retries a refused connect until its 30 s deadline: an 8 s outage delays the work
    in flight past its end, and nothing fails."""
    r = simulate(scenario('faults=[{kind="database", start_s=15, duration_s=8}]'), 0)
    assert r.failed == 0
    caught = [(s, e) for s, e, _ in ends(r) if s < 15 < e]
    assert caught and all(e >= 23 for _, e in caught)
    before = [e - s for s, e, _ in ends(r) if e < 15]
    assert max(before) < 5


def test_a_closed_connection_fails_the_calls_at_once():
    """Behind a proxy that accepts and closes, sqlx gives up at once: the client's starts in the
    outage fail (a permanent error), and no orchestration waits for the server."""
    r = simulate(
        scenario('faults=[{kind="database", start_s=15, duration_s=8, connect="closed"}]'), 0
    )
    failed = [(s, e) for s, e, bad in ends(r) if bad]
    assert failed and all(14 <= s < 23.5 for s, _ in failed)
    assert r.failed_statements > 0


def test_a_crashed_nodes_activities_run_again_after_the_worker_lock_timeout():
    crash = [
        "host.nodes=2",
        "host.client_nodes=1",
        "workload.activity_ms=300",
        "workload.arrival_rate_per_s=0.7",
        'faults=[{kind="node", node=2, start_s=10.3}]',
    ]
    runs = [simulate(scenario(*crash), rep) for rep in range(4)]
    assert sum(r.activity_reruns for r in runs) > 0
    late = max(e - s for r in runs for s, e, _ in ends(r) if s < 10.3 < e)
    assert late > 30  # the worker lock timeout, 30 s from the fetch
    quick = [simulate(scenario(*crash, "runtime_options.worker_lock_timeout_ms=3000"), rep)
             for rep in range(3)]  # fmt: skip
    assert max(e - s for r in quick for s, e, _ in ends(r) if s < 10.3 < e) < late / 3


def test_a_held_link_delays_what_is_in_flight_by_the_window():
    r = simulate(scenario('faults=[{kind="link", start_s=15, duration_s=5}]'), 0)
    caught = [(s, e) for s, e, _ in ends(r) if s < 15 < e]
    assert caught and all(e >= 20 for _, e in caught)
    assert r.failed == 0 and r.activity_reruns == 0


def test_added_latency_slows_calls_only_in_the_window():
    slow = simulate(scenario('faults=[{kind="link", start_s=10, duration_s=10, added_ms=200}]'), 0)
    inside = [e - s for s, e, _ in ends(slow) if 11 < s < 16]
    outside = [e - s for s, e, _ in ends(slow) if s > 25]
    assert inside and outside and min(inside) > 2 * (sum(outside) / len(outside))


def test_outages_and_link_windows():
    outages = Outages([(10.0, 12.0, True), (20.0, 21.0, False)])
    assert outages.down_until(9.99) is None and outages.down_until(10.0) == 12.0
    assert outages.down_until(12.0) is None and outages.epoch(15) == 1 and outages.epoch(25) == 2
    assert outages.refused(11) and not outages.refused(20.5)
    draws = iter([0.1, 0.1, 0.9])  # lost, lost, through
    link = LinkFaults([LinkWindow(5, 6), LinkWindow(8, 9, loss=0.5), LinkWindow(10, 11, 0.1)],
                      lambda: next(draws))  # fmt: skip
    assert link.cross(4.0, 0.01) == pytest.approx(4.01)
    assert link.cross(5.5, 0.01) == pytest.approx(6.01)  # held to the window's end
    assert link.cross(8.0, 0.01) == pytest.approx(8.0 + 0.2 + 0.4 + 0.01)  # two RTOs
    assert link.cross(10.0, 0.01) == pytest.approx(10.06)  # half the added RTT


def test_buckets_and_the_recovery_time():
    runs = [(0.5, 1.0, False), (1.5, 2.0, False), (2.5, 9.0, False), (3.5, None, False),
            (4.5, 5.0, True), (6.5, 7.0, False)]  # fmt: skip
    series = buckets(runs, 1.0, 10.0)
    assert [b.started for b in series[:7]] == [1, 1, 1, 1, 1, 0, 1]
    assert series[2].p95_ms == pytest.approx(6500) and series[7].completed == 1
    assert series[3].backlog == 2  # the one started at 2.5 and the one at 3.5
    assert series[4].failed == 0 and series[5].failed == 1  # by the bucket it ended in
    assert default_slo_ms(runs, 2.2) == pytest.approx(2 * 500)
    # bad: bucket 2 (6.5 s), bucket 3 (never ended), bucket 4 (failed): last bad ends at 5
    assert recovery_s(series, 1.0, 2.0, 3.0, 1000) == pytest.approx(2.0)
    assert recovery_s(series, 1.0, 2.0, 6.0, 1000) == 0.0
    assert isinstance(series[0], Bucket) and math.isnan(series[7].p95_ms)


@pytest.mark.parametrize(
    "fault, message",
    [
        ('{kind="node", node=3, start_s=1}', "node 3 does not exist; host.nodes is 2"),
        ('{kind="node", node=1, start_s=1}', "node 1 runs clients"),
        ('{kind="database", start_s=1}', "needs duration_s"),
        ('{kind="database", start_s=50, duration_s=1}', "after the run's 40 s of arrivals"),
        ('{kind="link", start_s=1, duration_s=1, connect="closed"}', "database faults only"),
        ('{kind="link", start_s=1, duration_s=1, added_ms=5, loss_pct=2}', "not both"),
        ('{kind="disk", start_s=1, duration_s=1}', "'disk' is not allowed"),
        ('{kind="database", start_s=-1, duration_s=1}', "must be >= 0"),
        ('{kind="link", start_s=1, duration_s=1e300}', "faults must end within 1e\\+08 s"),
        ('{kind="node", node=2, start_s=1e9}', "faults must end within"),
    ],
)
def test_a_fault_that_cannot_apply_is_one_error(fault, message):
    with pytest.raises(ConfigError, match=message):
        scenario("host.nodes=2", "host.client_nodes=1", f"faults=[{fault}]")


def test_overlapping_faults_on_one_resource_are_one_error():
    both = ('faults=[{kind="link", start_s=5, duration_s=5}, '
            '{kind="link", node=1, start_s=8, duration_s=1}]')  # fmt: skip
    with pytest.raises(ConfigError, match="overlap on every link"):
        scenario(both)
    scenario('faults=[{kind="link", start_s=5, duration_s=5}, '
             '{kind="database", start_s=8, duration_s=1}]')  # fmt: skip


def test_run_reports_recovery_and_plot_draws_it(tmp_path):
    out = tmp_path / "f.json"
    args = ["run", "lab", "--replications", "2", *[a for o in OPEN for a in ("--set", o)],
            "--set", 'faults=[{kind="database", start_s=15, duration_s=8}]']  # fmt: skip
    code, text, _ = invoke(*args)
    assert code == 0
    assert "faults: at 15 s the database is down for 8 s" in text
    assert "recovery: p95 back under" in text
    code, printed, _ = invoke(*args, "--json")
    report = json.loads(printed)["faults"]
    assert report["windows"] == [[15.0, 23.0]] and len(report["recovery_per_run_s"]) == 2
    assert max(b["backlog"] for b in report["timeline"]) > 2
    out.write_text(printed)
    code, text, _ = invoke("plot", str(out), "--out", str(tmp_path / "f.png"))
    assert code == 0 and (tmp_path / "f.png").stat().st_size > 10_000


def test_a_bad_fault_on_the_command_line_is_one_line(tmp_path):
    code, _, err = invoke("run", "lab", "--set", 'faults=[{kind="node", node=4, start_s=1}]')
    assert code == 2 and "node 4 does not exist" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_faults_are_what_ifs_in_sweep_and_compare(tmp_path):
    """A crashed node's locked work comes back after the worker lock timeout: a sweep over it
    says how long recovery takes each way; compare reports recovery beside each option."""
    out = tmp_path / "sweep.csv"
    code, _, err = invoke(
        "sweep", "failover", "--replications", "2", "--out", out,
        "--set", "host.nodes=2", "--set", "host.client_nodes=1",
        "--set", "workload.activity_ms=300", "--set", "workload.arrival_rate_per_s=0.5",
        "--set", 'faults=[{kind="node", node=2, start_s=10.3}]',
        "--grid", "runtime_options.worker_lock_timeout_ms=3000,30000",
    )  # fmt: skip
    assert code == 0, err
    rows = out.read_text().splitlines()
    header = rows[0].split(",")
    assert "recovery_s" in header and "activity_reruns" in header
    cells = [dict(zip(header, row.split(","))) for row in rows[1:]]
    assert len(cells) == 2 and all(c["recovery_s"] != "" for c in cells)
    code, text, err = invoke("compare", "failover", "colocate", "--replications", "2")
    assert code == 0, err
    assert text.count("after the faults: recovery") == 2


def test_a_bucket_narrower_than_10_ms_is_one_error():
    with pytest.raises(ConfigError, match="recovery.bucket_ms: must be >= 10 ms, got 0.001 ms"):
        scenario("recovery.bucket_ms=0.001")


def test_a_lost_message_waits_linux_s_capped_retransmissions():
    """RTO 200 ms doubling to Linux's 120 s cap, 15 retransmissions at most (tcp_retries2):
    a link that loses everything delays a message 804.6 s, not forever."""
    link = LinkFaults([LinkWindow(0, 10, loss=0.999)], lambda: 0.0)
    doubling = sum(0.2 * 2**i for i in range(10))  # 0.2 ... 102.4 s
    assert link.cross(1.0, 0.01) == pytest.approx(1.0 + doubling + 5 * 120.0 + 0.01)


def test_a_restarted_node_counts_in_the_crashed_ones_place():
    # node 2 crashes at 5 s and a fresh node takes its place at 6 s: the replacement's
    # activities count in the worker slots' busy time and its pool in the connections in use
    # per node (averaged over the whole window), so both stay near the run without the crash
    load = ["host.nodes=2", "host.client_nodes=1", "workload.activity_ms=300",
            "workload.arrival_rate_per_s=0.7"]  # fmt: skip
    plain = simulate(scenario(*load), 0)
    restarted = simulate(
        scenario(*load, 'faults=[{kind="node", node=2, start_s=5, duration_s=1}]'), 0
    )
    assert restarted.worker_slot_utilisation == pytest.approx(
        plain.worker_slot_utilisation, rel=0.25
    )
    assert restarted.pool_in_use_mean == pytest.approx(plain.pool_in_use_mean, rel=0.15)
