"""The database as the bottleneck: a recording on a server pinned to one CPU says what the server
spent (its CPU busy fraction, each procedure's calls and execution time), calibrate and validate
use it, and a user's pg_stat_statements export is read or refused in one line. The recording
runs the real runtime on a throwaway PostgreSQL: it fails, it is not skipped, without them."""

import json

import pytest

from durosim.evidence.calibrate import fit, from_trace
from durosim.evidence.ingest import IngestError, read_logs
from durosim.evidence.trace_format import TraceError, read_trace
from durosim.evidence.validate import SERVER_BUSY, compare
from durosim.evidence.validation_report import markdown
from durosim.lab.server_watch import statement_costs, wait_summary
from tests.test_record import run


@pytest.fixture(scope="module")
def pinned(tmp_path_factory):
    """One run on a server pinned to one CPU, an idle second node beside the measured one."""
    path = tmp_path_factory.mktemp("pinned") / "pinned.jsonl"
    code, out, err = run(
        "record", "--db-cores", 1, "--nodes", 2, "--poll-interval-ms", 10, "--fanout", 3,
        "--warmup", 1, "--count", 6, "--calls", "--server-waits", "--json", "--out", path,
    )  # fmt: skip
    assert code == 0, err
    return read_trace(path), json.loads(out)


def test_the_header_says_what_the_server_spent(pinned):
    trace, printed = pinned
    assert trace.conditions["database_cores"] == 1 and trace.conditions["nodes"] == 2
    server = trace.server
    assert server["cores"] == 1 and server["window_s"] > 0
    # two runtimes polling every 10 ms keep one core visibly busy, never more than all of it
    assert 0.05 < server["cpu_busy"] <= 1.05
    assert server["cpu_s"] == pytest.approx(server["cpu_busy"] * server["window_s"], rel=0.01)
    statements = server["statements"]
    assert {"fetch_orchestration_item", "fetch_work_item", "ack_orchestration_item"} <= set(
        statements
    )
    # both nodes poll: far more fetches than the 7 orchestrations' turns need
    assert statements["fetch_work_item"]["calls"] > 7 * 3
    assert all(cost["mean_ms"] > 0 for cost in statements.values())
    assert printed["server"]["cpu_busy"] == server["cpu_busy"]


def test_the_header_says_where_the_servers_backends_waited(pinned):
    trace, _ = pinned
    waits = trace.server["waits"]
    # a sample every 10 ms, give or take the sampling query's own time
    assert waits["samples"] >= trace.server["window_s"] / 0.05
    procedures = {"fetch_orchestration_item", "fetch_work_item", "ack_orchestration_item",
                  "ack_work_item", "fetch_history", "enqueue_orchestrator_work",
                  "get_custom_status"}  # fmt: skip
    assert waits["backends"] and set(waits["backends"]) <= procedures
    for by_wait in waits["backends"].values():
        # "CPU", or a pg_stat_activity wait: "type:event"
        assert all(wait == "CPU" or ":" in wait for wait in by_wait)
        assert all(0 < mean < 40 for mean in by_wait.values())


def test_wait_summary_averages_over_the_samples():
    counts = {("fetch_work_item", "CPU"): 50, ("fetch_orchestration_item", "Lock:advisory"): 300,
              ("fetch_history", "CPU"): 0}  # fmt: skip
    assert wait_summary(counts, 100) == {
        "samples": 100,
        "interval_ms": 10,
        "backends": {
            "fetch_orchestration_item": {"Lock:advisory": 3.0},
            "fetch_work_item": {"CPU": 0.5},
        },
    }


def test_the_report_sets_the_models_advisory_convoy_beside_the_measured_one():
    trace = read_trace("traces/recorded/dbload/rtt0_f5_2x2_seq_poll10_db1_idle08_waits.jsonl")
    result = compare(trace, replications=2)
    measured = trace.server["waits"]["backends"]["fetch_orchestration_item"]["Lock:advisory"]
    row = next(line for line in markdown([result]).splitlines() if "Lock:advisory" in line)
    assert row.endswith(f"| {measured:.2f} / {result.extra['advisory_waiting']:.2f} |")
    # eight idle nodes' fetches do queue on the lock in the model too
    assert result.extra["advisory_waiting"] > 0.5


def test_calibrate_takes_the_server_time_from_the_recording(pinned):
    trace, _ = pinned
    result = fit(from_trace(trace))
    measured = trace.server["statements"]["fetch_history"]["mean_ms"]
    assert result.server["fetch_history"].p50_ms == pytest.approx(measured)
    assert "server-side timing" in result.server["fetch_history"].source


def test_validate_compares_the_server_busy_in_points(pinned):
    trace, _ = pinned
    result = compare(trace, replications=2)
    assert result.measured[SERVER_BUSY] == pytest.approx(trace.server["cpu_busy"] * 100, abs=0.01)
    points = result.predicted[SERVER_BUSY] - result.measured[SERVER_BUSY]
    assert result.errors_pct[SERVER_BUSY] == pytest.approx(points, abs=0.01)
    assert result.tolerances_pct[SERVER_BUSY] == 10.0


def test_a_trace_without_server_figures_is_compared_as_before():
    trace = read_trace("traces/recorded/rtt10_f5_2x2_seq.jsonl")
    assert trace.server is None
    assert SERVER_BUSY not in compare(trace, replications=1).measured


@pytest.mark.parametrize(
    "server, message",
    [
        ("[]", "'server' must be an object"),
        ('{"cpu_busy": -0.5}', "server 'cpu_busy' must be >= 0"),
        ('{"cpu_busy": "high"}', "'cpu_busy' must be a finite number"),
        ('{"statements": {"fetch_history": {"calls": 1.5, "mean_ms": 1}}}', "whole number"),
        ('{"statements": {"fetch_history": {"calls": 3}}}', "'mean_ms' must be a finite number"),
        ('{"waits": [1]}', "'waits' must be an object with 'samples' and 'backends'"),
        ('{"waits": {"samples": 5, "backends": {"f": {"CPU": -1}}}}', "'CPU' must be >= 0"),
        ('{"waits": {"samples": 5, "backends": {"f": 2}}}', "'f' must be an object of wait"),
    ],
)
def test_a_bad_server_header_is_one_error(tmp_path, server, message):
    path = tmp_path / "bad.jsonl"
    header = f'{{"format": "durosim-trace/1", "conditions": {{}}, "server": {server}}}'
    record = '{"type": "orchestration", "instance": "i", "start_ms": 0, "end_ms": 5}'
    path.write_text(header + "\n" + record + "\n")
    with pytest.raises(TraceError, match=message):
        read_trace(path)


def test_statement_costs_pool_the_texts_of_one_procedure():
    rows = [
        ("SELECT * FROM s.fetch_history($1)", 3, 3.0, 0.0),
        ("select * from s.fetch_history($1) -- other text", 1, 3.0, 0.0),
        ("select 1", 50, 1.0, 0.0),
        ("SELECT * FROM s.ack_worker($1, $2)", 0, 0.0, 0.0),
    ]
    assert statement_costs(rows) == {
        "fetch_history": {"calls": 4, "mean_ms": 1.5, "stddev_ms": 0.0}
    }


def test_a_pg_stat_statements_export_with_totals_gives_means(tmp_path):
    path = tmp_path / "pss.csv"
    path.write_text(
        "query,calls,total_exec_time\n"
        '"SELECT * FROM s.fetch_history($1)",4,2.0\n'
        '"SELECT * FROM s.fetch_work_item($1, $2)",10,5\n'
    )
    timings = read_logs([path]).timings
    assert timings["fetch_history"].mean_ms == pytest.approx(0.5)
    assert timings["fetch_work_item"].calls == 10


@pytest.mark.parametrize(
    "header", ["queryid,query,calls,rows", "query,total_exec_time", "queryid,calls,mean_exec_time"]
)
def test_a_pg_stat_statements_export_without_the_columns_is_one_error(tmp_path, header):
    path = tmp_path / "pss.csv"
    path.write_text(header + "\n1,2,3,4\n")
    with pytest.raises(IngestError, match=f"{path}: a pg_stat_statements export without"):
        read_logs([path])


def test_db_cores_are_checked_before_anything_starts(tmp_path):
    out = tmp_path / "t.jsonl"
    code, _, err = run("record", "--db-cores", 999, "--out", out)
    assert code == 2 and "--db-cores 999: this machine has" in err and "Traceback" not in err
    code, _, err = run("record", "--db-cores", 0, "--out", out)
    assert code == 2 and "Traceback" not in err
    code, _, err = run("record", "--db-cores", 1, "--dsn", "postgres://u@h:1/d", "--out", out)
    assert code == 2 and "cannot apply with --dsn" in err
    assert not out.exists()


def test_a_connection_costs_the_real_server_more_cpu_than_a_statement():
    """The measurement behind the `connect` and `connect_refused` server costs, small: on a
    throwaway PostgreSQL pinned to one CPU, opening a connection and being refused one each
    cost the server milliseconds of CPU, where `select 1` on an open connection costs
    hundredths of one (the shipped defaults are this at N = 1000)."""
    from durosim.lab.connect_cost import measure

    result = measure(60)
    assert result["refused"] == 60 and result["connections_held"] >= 90
    assert result["connect_cpu_ms"] > 1.0
    assert result["refused_connect_cpu_ms"] > 1.0
    assert result["statement_cpu_ms"] < 0.5


@pytest.mark.parametrize("argv", [["abc"], ["0"], ["-5"], ["1.5"], ["10", "20"]])
def test_a_bad_connect_cost_argument_is_one_line(argv, capsys):
    from durosim.lab.connect_cost import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "N a whole number of connects >= 1" in err
