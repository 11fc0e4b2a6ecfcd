"""Open-loop load, several nodes, max_connections, and the capacity search."""

import json

import pytest
from click.testing import CliRunner

from durosim.cli import main
from durosim.experiments.capacity import capacity, knee, parse_slo
from durosim.model.scenario import load_table
from durosim.model.world import arrival_times, simulate
from durosim.sim.config import ConfigError
from durosim.sim.rng import Streams


def open_scenario(*extra):
    return load_table(
        {},
        ['workload.mode="open"', "workload.duration_s=60", "workload.warmup_s=10",
         "network.rtt_ms=10", *extra],
    )  # fmt: skip


def test_poisson_arrivals_come_at_the_rate():
    s = open_scenario("workload.arrival_rate_per_s=50", "workload.duration_s=200")
    times = arrival_times(s, Streams(1))
    assert len(times) == pytest.approx(50 * 200, rel=0.03)
    assert list(times) == sorted(times) and times[-1] < 200
    assert arrival_times(s, Streams(1)) == times  # common random numbers


def test_open_load_below_capacity_is_served_at_its_rate():
    r = simulate(open_scenario("workload.arrival_rate_per_s=1"), 0)
    assert r.failed == 0
    assert r.throughput_per_s == pytest.approx(1.0, rel=0.2)
    assert r.measured >= 35


def test_arrivals_replay_a_trace(root):
    trace = root / "traces/lab/rtt50_f5_2x2_seq.jsonl"
    s = open_scenario(f'workload.arrival_trace="{trace}"')
    times = arrival_times(s, Streams(1))
    assert len(times) == 23 and times[0] == 0.0
    assert times[3] == pytest.approx(5.720635)
    assert simulate(s, 0).completed == 23


@pytest.mark.parametrize("nodes, limit", [(2, 100), (3, 12)])
def test_nodes_share_one_database_within_max_connections(nodes, limit):
    s = open_scenario("workload.arrival_rate_per_s=2", f"host.nodes={nodes}",
                      f"database.max_connections={limit}")  # fmt: skip
    r = simulate(s, 0)
    assert r.measured > 50
    assert r.connections_open <= min(limit, nodes * 10)
    if nodes * 10 <= limit:
        assert r.failed == 0 and r.pool_timed_out == 0
        assert r.calls_per_orchestration["ack_work_item"] == 5
    else:  # a pool that needs one more connection than the server has left times out
        assert r.connections_open == limit and r.pool_timed_out > 0
    assert 0 <= r.worker_slot_utilisation <= 1 and 0 <= r.orchestration_slot_utilisation <= 1


def test_more_nodes_take_more_load():
    one = simulate(open_scenario("workload.arrival_rate_per_s=4"), 0)
    two = simulate(open_scenario("workload.arrival_rate_per_s=4", "host.nodes=2"), 0)
    assert sum(two.latencies_s) / len(two.latencies_s) < sum(one.latencies_s) / len(one.latencies_s)


@pytest.mark.parametrize(
    "text, metric, limit_ms",
    [("p95<2s", "p95", 2000.0), ("p99 < 500ms", "p99", 500.0), ("mean<=1.5s", "mean", 1500.0)],
)
def test_slo_parsing(text, metric, limit_ms):
    objective = parse_slo(text)
    assert (objective.metric, objective.limit_ms) == (metric, limit_ms)


@pytest.mark.parametrize("text", ["p95", "p95<2", "p42<2s", "fast", "order:", ":p95<2s"])
def test_bad_slos(text):
    with pytest.raises(ConfigError, match="expected \\[WORKFLOW:\\]METRIC<VALUE"):
        parse_slo(text)


def test_an_slo_for_one_workflow():
    objective = parse_slo("order:p95<10s")
    assert (objective.workflow, objective.metric, objective.limit_ms) == ("order", "p95", 1e4)
    with pytest.raises(ConfigError, match="finite time > 0"):
        parse_slo("p95<0ms")


def test_knee_of_a_hockey_stick():
    curve = [(1, 100), (2, 101), (3, 103), (4, 110), (4.2, 400), (4.3, 2000)]
    points = [{"throughput_per_s": x, "latency_ms": {"p95": y}} for x, y in curve]
    assert knee(points)["throughput_per_s"] in (4, 4.2)


def test_capacity_search_brackets_the_objective():
    s = load_table({}, ["network.rtt_ms=20"])
    result = capacity(s, parse_slo("p95<2s"), replications=1, duration_s=30, warmup_s=5)
    best = result["max_rate_per_s"]
    assert best is not None and result["at_max"]["met"]
    assert result["at_max"]["latency_ms"]["p95"] < 2000
    higher = [p for p in result["points"] if p["rate_per_s"] > best]
    assert higher and not higher[0]["met"]
    assert result["saturates_first"] in result["at_max"]["utilisation"]


def test_capacity_cli(root, tmp_path):
    runner = CliRunner()
    plot = tmp_path / "c.png"
    result = runner.invoke(main, ["capacity", str(root / "configs/lab.toml"), "--slo", "p95<2s",
                                  "--set", "network.rtt_ms=20", "--duration-s", "20",
                                  "--warmup-s", "5", "--replications", "1", "--json",
                                  "--plot", str(plot)])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["max_rate_per_s"] > 0 and out["saturates_first"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(main, ["capacity", str(root / "configs/lab.toml"), "--slo", "quick"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1


def test_when_no_rate_meets_the_slo_it_says_what_it_saw_and_exits_1():
    from click.testing import CliRunner

    from durosim.cli import main

    args = ["capacity", "lab", "--slo", "p95<100ms", "--duration-s", "20", "--warmup-s", "5",
            "--replications", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.startswith("no rate meets p95<100ms: at the lowest tried, 0.6667/s, p50")
    as_json = CliRunner().invoke(main, [*args, "--json"])
    assert as_json.exit_code == 1 and '"max_rate_per_s": null' in as_json.output


def test_min_and_max_rate_bound_the_search():
    from click.testing import CliRunner

    from durosim.cli import main

    result = CliRunner().invoke(
        main, ["capacity", "lab", "--slo", "p95<3s", "--set", "network.rtt_ms=5", "--min-rate",
               "0.5", "--max-rate", "1.5", "--duration-s", "20", "--warmup-s", "5",
               "--replications", "1", "--json"],
    )  # fmt: skip
    rates = [p["rate_per_s"] for p in json.loads(result.output)["points"]]
    assert min(rates) == 0.5 and max(rates) <= 1.5
    bad = CliRunner().invoke(main, ["capacity", "lab", "--slo", "p95<2s", "--min-rate", "3",
                                    "--max-rate", "2"])  # fmt: skip
    assert bad.exit_code == 2 and "--min-rate 3 is above --max-rate 2" in bad.output


def test_ctrl_c_in_capacity_keeps_the_rates_tried_and_exits_130():
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-c", "from durosim.cli import main; main()", "capacity", "lab",
         "--slo", "p95<2s", "--set", "network.rtt_ms=20", "--duration-s", "600",
         "--replications", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(6.0)  # a rate of 600 s of arrivals takes about a second at the lowest rates
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("durosim: error: interrupted: ")
    done = json.loads(out)
    assert done["interrupted"] is True and done["points"], "the rates tried so far"


def test_a_rate_beyond_the_work_limit_ends_the_search_with_what_it_found():
    from dataclasses import replace

    from durosim.experiments.capacity import first_rate, open_load
    from durosim.experiments.size import estimated_events

    s = load_table({}, ["network.rtt_ms=20"])
    first = first_rate(s, 30, 5)

    def events(rate):
        return estimated_events(replace(open_load(s, rate, 30, 5), replications=1))

    limit = (events(first) + events(2 * first)) / 2
    result = capacity(s, parse_slo("p95<2s"), replications=1, duration_s=30, warmup_s=5,
                      max_events=limit)  # fmt: skip
    assert [p["rate_per_s"] for p in result["points"]] == [first]
    assert result["max_rate_per_s"] == round(first, 4)
    assert result["stopped"].startswith(f"{2 * first:.4g}/s was not tried")


def test_capacity_refuses_a_search_whose_first_rate_is_beyond_the_limit(tmp_path):
    result = CliRunner().invoke(
        main, ["capacity", "lab", "--slo", "p95<2s", "--duration-s", "1000000"]
    )
    assert result.exit_code == 2, result.output
    assert "was not tried" in result.output and "--large" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_capacity_gives_the_same_answer_on_two_processes(tmp_path):
    args = ["capacity", "lab", "--slo", "p95<2s", "--set", "network.rtt_ms=20",
            "--duration-s", "30", "--warmup-s", "5", "--json"]  # fmt: skip
    one = CliRunner().invoke(main, args)
    two = CliRunner().invoke(main, [*args, "--jobs", "2"])
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    assert json.loads(one.output) == json.loads(two.output)


def test_a_rate_reported_as_met_has_all_its_replications():
    s = load_table({}, ["network.rtt_ms=20"])
    result = capacity(s, parse_slo("p95<2s"), replications=3, duration_s=30, warmup_s=5)
    assert result["at_max"]["replications"] == 3
    assert all(p["replications"] == 3 for p in result["points"] if p["met"]
               and p["rate_per_s"] == result["max_rate_per_s"])  # fmt: skip
    # far from the limit one replication decides: the search ran fewer than 3 a rate in all
    assert sum(p["replications"] for p in result["points"]) < 3 * len(result["points"])


def test_a_rate_certainly_missed_stops_early_and_the_answer_is_unchanged():
    """A replication stops once more orchestrations are slower than the limit than the
    percentile allows across every replication's arrivals: the search's answer is what full
    runs give, at less cost."""
    from durosim.experiments.capacity import doomed_at, evaluate, open_load

    s = load_table({}, ["network.rtt_ms=20"])
    objective = parse_slo("p95<2s")
    overloaded = evaluate(s, 3.2, objective, 1, 30, 5)
    assert not overloaded["met"] and overloaded["stopped_early_s"] < 30
    load = open_load(s, 3.2, 30, 5)
    doomed = doomed_at(load, objective, 1)
    assert doomed.late >= 3 and doomed.limit_s == 2.0
    full = simulate(load, 0)  # without the stop: the objective is missed all the same
    assert sum(x > 2.0 for x in full.latencies_s) >= doomed.late


def test_a_deployment_past_max_connections_times_out_instead_of_waiting():
    # six nodes whose pools would grow to 10 each against a server that takes 12: the pools
    # that cannot grow hold refused permits for sqlx's 30 s acquire timeout, then fail
    s = open_scenario(
        "workload.arrival_rate_per_s=20", "host.nodes=6", "database.max_connections=12",
        "database.cores=1", "runtime_options.dispatcher_poll_interval_ms=10",
    )  # fmt: skip
    r = simulate(s, 0)
    assert r.connections_open == 12
    # duroxide-pg retries a timed-out call 3 times: a dispatcher sees the error after 2 min
    assert r.pool_timed_out > 0
    within = simulate(open_scenario(
        "workload.arrival_rate_per_s=20", "host.nodes=6", "database.cores=1",
        "runtime_options.dispatcher_poll_interval_ms=10",
    ), 0)  # fmt: skip
    assert within.pool_timed_out == 0 and within.connections_open > 12
    # a client whose pool timed out fails its orchestration; none fail within the limit
    assert r.failed > within.failed == 0


def test_run_says_when_calls_timed_out_for_want_of_a_connection():
    from click.testing import CliRunner

    from durosim.cli import main

    args = ["run", "lab", "--replications", "1", "--set", "workload.count=5",
            "--set", "host.nodes=3", "--set", "database.max_connections=4",
            "--set", "runtime_options.dispatcher_poll_interval_ms=10"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "for a connection the server refused (its 4 are all open, 4 at the end)" in (
        result.output
    )
    assert "acquire timeout" in result.output and "queued for a permit" not in result.output
    within = CliRunner().invoke(main, args[:-4] + args[-2:])
    assert within.exit_code == 0 and "connections:" not in within.output
    # a pool of one far past its load: callers wait out the deadline in the permit queue
    starved = CliRunner().invoke(main, [
        "run", "lab", "--replications", "1", "--set", "pool.size=1", "--set", "network.rtt_ms=100",
        "--set", 'workload.mode="open"', "--set", "workload.arrival_rate_per_s=5",
        "--set", "workload.duration_s=60", "--set", "workload.warmup_s=5",
    ])  # fmt: skip
    assert starved.exit_code == 0, starved.output
    assert "queued for a permit of the pool (size 1)" in starved.output
    assert "the server refused" not in starved.output
