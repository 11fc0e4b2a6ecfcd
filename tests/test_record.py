"""`durosim record` end to end: the real duroxide runtime, a throwaway PostgreSQL, the delay
proxy, and a trace the simulator agrees with. Needs PostgreSQL's server binaries and the
record extra (duroxide, psycopg): they are not skipped without them, they fail."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from durosim.cli import main
from durosim.evidence.calibrate import fit, from_trace
from durosim.evidence.trace_format import read_trace
from durosim.evidence.validate import compare
from durosim.lab.cluster import throwaway_cluster

ROOT = Path(__file__).resolve().parent.parent


def durosim(*args, **popen):
    """`durosim ...` as a user runs it: a process of its own."""
    command = [sys.executable, "-c", "from durosim.cli import main; main()", *map(str, args)]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run(*args, timeout=60):
    process = durosim(*args)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.fixture(scope="module")
def database():
    """A user's database, for --dsn."""
    with throwaway_cluster("userdb") as dsn:
        yield dsn


def _durosim_schemas(dsn: str) -> list[str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        query = "select nspname from pg_namespace where nspname like 'durosim%'"
        return [row[0] for row in conn.execute(query)]


@pytest.fixture(scope="module")
def sequential_trace(tmp_path_factory):
    # 40 measured, not fewer: latencies fall in two clusters ~80 ms apart (the client's wait
    # back-off against the 100 ms poll) and neighbours share a cluster, so short runs often miss
    # one: with 6 the measured p95 was 30-36% under the prediction in 2 of 3 runs, and one run of
    # 20 had p95 32% under; 40 keeps every error of 7 runs within 16% (tolerance 25% below 20 ms).
    path = tmp_path_factory.mktemp("record") / "rtt10_f2_seq.jsonl"
    code, out, err = run(
        "record", "--rtt-ms", 10, "--fanout", 2, "--warmup", 2, "--count", 40,
        "--mode", "sequential", "--out", path,
    )  # fmt: skip
    assert code == 0, err
    return read_trace(path)


def test_the_header_says_what_was_measured(sequential_trace):
    c = sequential_trace.conditions
    assert c["runtime"] == "duroxide-0.2"
    assert c["database"].startswith("postgresql-")
    assert c["rtt_nominal_ms"] == 10.0
    assert 10.0 <= c["rtt_ms"] <= 13.0, "the proxy's real RTT, measured with select 1"
    assert (c["fanout"], c["activity_ms"], c["mode"], c["in_flight"]) == (2, 0.0, "sequential", 1)
    assert (c["orchestration_concurrency"], c["worker_concurrency"]) == (2, 2)
    assert (c["poll_interval_ms"], c["pool_size"]) == (100, 10)
    assert "duration_s" not in c
    assert "select 1" in sequential_trace.source


def test_records_are_on_one_clock_from_the_first_start(sequential_trace):
    records = sequential_trace.orchestrations
    assert [o.warmup for o in records] == [True] * 2 + [False] * 40
    assert records[0].start_ms == 0.0
    for before, after in zip(records, records[1:]):
        assert after.start_ms >= before.end_ms, "sequential: the next starts after the last ends"
    # At least the RTTs of the critical path: start, fetch, ack, fetch work, ...
    assert all(o.latency_ms > 5 * 10.0 for o in records)


def test_the_simulator_predicts_the_recording(sequential_trace):
    result = compare(sequential_trace)
    assert result.ok, (result.measured, result.predicted, result.errors_pct)


def test_stress_mode_writes_the_stress_test_summary(tmp_path, database):
    path = tmp_path / "stress.jsonl"
    code, out, err = run(
        "record", "--dsn", database, "--rtt-ms", 10, "--fanout", 2, "--mode", "stress",
        "--in-flight", 4, "--duration-s", 2, "--warmup", 0, "--out", path,
    )  # fmt: skip
    assert code == 0, err
    assert _durosim_schemas(database) == [], "the run's schema is dropped from a user's database"
    trace = read_trace(path)
    assert trace.conditions["mode"] == "stress"
    assert (trace.conditions["in_flight"], trace.conditions["duration_s"]) == (4, 2.0)
    (summary,) = trace.summaries
    assert summary.total_s >= 2.0
    assert summary.completed == len(trace.orchestrations) > 4
    assert summary.throughput_per_s == pytest.approx(summary.completed / summary.total_s, 1e-3)


def test_calls_adds_one_record_per_provider_call(tmp_path, database):
    # 40 ms, not 10: a statement in the run takes about 1 ms more than an idle `select 1`
    # through the same proxy on this shared VM (the proxy and runtime busy beside it; 0.1-1.3 ms
    # in four runs at 10 ms, 0.9-1.1 ms in four at 40), an absolute offset that is 10% of a 10 ms
    # RTT, so at 10 ms the check below measured the machine, not the fit.
    path = tmp_path / "calls.jsonl"
    code, out, err = run(
        "record", "--dsn", database, "--rtt-ms", 40, "--fanout", 2, "--warmup", 0, "--count", 4,
        "--calls", "--out", path,
    )  # fmt: skip
    assert code == 0, err
    trace = read_trace(path)
    ops = {c.op for c in trace.calls}
    assert {"fetch_orchestration_item", "ack_orchestration_item", "fetch_work_item"} <= ops
    last_end = max(o.end_ms for o in trace.orchestrations)
    assert all(0.0 <= c.start_ms <= c.end_ms <= last_end + 1000.0 for c in trace.calls)
    # calibrate recovers the RTT of a log it has not seen, within 5%, and sees the pool's ping
    fitted = fit(from_trace(trace))
    assert fitted.rtt_ms == pytest.approx(trace.conditions["rtt_ms"], rel=0.05)
    assert fitted.ping_round_trips == pytest.approx(1.0, abs=0.25)


def test_open_mode_on_two_nodes_records_every_arrival(tmp_path, database):
    path = tmp_path / "open.jsonl"
    code, out, err = run(
        "record", "--dsn", database, "--rtt-ms", 5, "--fanout", 2, "--mode", "open",
        "--rate", 4, "--duration-s", 3, "--seed", 7, "--nodes", 2, "--warmup", 1, "--out", path,
    )  # fmt: skip
    assert code == 0, err
    assert _durosim_schemas(database) == [], "the run's schema is dropped"
    trace = read_trace(path)
    c = trace.conditions
    assert (c["mode"], c["arrival_rate_per_s"], c["duration_s"]) == ("open", 4.0, 3.0)
    assert (c["nodes"], c["client_nodes"], c["wait_timeout_ms"]) == (2, 1, 120_000)
    measured = [o for o in trace.orchestrations if not o.warmup]
    assert trace.arrivals == len(measured) > 4 and trace.failed == 0
    # the arrivals are the seeded Poisson times, each started at its time on the trace's clock
    from durosim.lab.driver import Plan

    plan = Plan(5, 2, 0.0, 2, 2, "open", 1, 1, 3.0, 1, 100, 10, 4.0, 7)
    starts = sorted(o.start_ms for o in measured)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    expected = plan.arrivals_s()
    wanted = [(b - a) * 1000.0 for a, b in zip(expected, expected[1:])]
    assert len(starts) == len(expected)
    assert all(abs(g - w) < 50.0 for g, w in zip(gaps, wanted)), (gaps, wanted)
    # validate replays those arrival times on two nodes, with the client on the first
    result = compare(trace, replications=2)
    assert result.scenario.host.nodes == 2 and result.scenario.host.client_nodes == 1
    assert result.scenario.workload.arrival_trace
    assert result.measured["failed"] == 0 and "failed" in result.predicted


def test_an_orchestration_that_times_out_is_recorded_not_dropped(tmp_path, database):
    path = tmp_path / "timeouts.jsonl"
    code, out, err = run(
        "record", "--dsn", database, "--rtt-ms", 20, "--fanout", 2, "--mode", "open",
        "--rate", 2, "--duration-s", 2, "--wait-timeout-ms", 50, "--warmup", 0, "--out", path,
    )  # fmt: skip
    assert code == 0, err
    trace = read_trace(path)
    assert trace.arrivals == len(trace.orchestrations) >= 1
    assert trace.failed == len(trace.failures) == trace.arrivals, "none completes in 50 ms"
    assert trace.measured == []
    assert "did not complete" in out


WORKFLOWS = """
[[workload.workflows]]
name = "parent"
weight = 1
steps = [
  { kind = "fanout", n = [1, 2], branch = [ { kind = "timer", duration_ms = 50 } ] },
  { kind = "sub_orchestration", workflow = "child" },
  { kind = "event", after_ms = 1500 },
]
[[workload.workflows]]
name = "child"
steps = [ { kind = "activity", duration_ms = 5 } ]
[[workload.workflows]]
name = "again"
weight = 1
steps = [ { kind = "activity", duration_ms = 5 }, { kind = "continue_as_new", times = 1 } ]
"""


def test_workload_runs_a_scenarios_workflows_on_the_real_runtime(tmp_path, database):
    scenario = tmp_path / "mix.toml"
    scenario.write_text(WORKFLOWS)
    path = tmp_path / "mix.jsonl"
    code, out, err = run(
        "record", "--dsn", database, "--rtt-ms", 5, "--workload", scenario, "--count", 6,
        "--warmup", 0, "--out", path,
    )  # fmt: skip
    assert code == 0, err
    trace = read_trace(path)
    assert [w["name"] for w in trace.conditions["workflows"]] == ["parent", "child", "again"]
    names = [o.workflow for o in trace.orchestrations]
    assert set(names) <= {"parent", "again"} and len(names) == 6
    assert all(o.completed for o in trace.orchestrations), "the event came after the wait"
    parents = [o.latency_ms for o in trace.orchestrations if o.workflow == "parent"]
    assert all(latency >= 1500.0 for latency in parents), "a parent waits for its event"
    result = compare(trace, replications=2)
    assert result.scenario.workload.workflow_trace, "validate replays the recorded mix"
    assert set(result.extra["workflows"]) <= {"parent", "again"}


def test_a_branch_of_several_steps_cannot_be_recorded(tmp_path):
    scenario = tmp_path / "branchy.toml"
    scenario.write_text(
        '[[workload.workflows]]\nname = "w"\nweight = 1\nsteps = [ { kind = "fanout", n = 2, '
        'branch = [ { kind = "activity", duration_ms = 1 }, { kind = "timer", duration_ms = 1 } '
        "] } ]\n"
    )
    result = CliRunner().invoke(
        main, ["record", "--workload", str(scenario), "--out", str(tmp_path / "x.jsonl")]
    )
    assert result.exit_code == 2 and "make a branch of several steps a sub_orchestration" in (
        result.output
    )
    assert not (tmp_path / "x.jsonl").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_database_is_a_one_line_error(tmp_path):
    dsn = f"postgres://postgres@127.0.0.1:{_free_port()}/nowhere"
    result = CliRunner().invoke(main, ["record", "--dsn", dsn, "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code not in (0, None)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("durosim: error: cannot connect"), lines
    assert "Traceback" not in result.output


def test_without_duroxide_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "duroxide", None)
    result = CliRunner().invoke(main, ["record", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code not in (0, None)
    assert result.output.strip() == (
        "durosim: error: the duroxide package is not installed: pip install 'durosim[record]'"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--concurrency", "2x2"], "expected O:W"),
        (["--mode", "sequential", "--duration-s", "5"], "--duration-s does not apply"),
        (["--dsn", "host=localhost"], "expected a URL"),
        (["--mode", "open"], "--mode open needs --rate"),
        (["--mode", "open", "--rate", "0"], "expected a finite number > 0"),
        (["--mode", "open", "--rate", "nan"], "expected a finite number > 0"),
        (["--mode", "open", "--rate", "inf"], "expected a finite number > 0"),
        (["--mode", "open", "--rate", "1", "--duration-s", "-3"], "expected a finite number > 0"),
        (["--rate", "1"], "--rate does not apply to --mode sequential"),
        (["--nodes", "0"], "0 is not in the range x>=1"),
        (["--wait-timeout-ms", "0"], "0 is not in the range x>=1"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(main, ["record", *args, "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_ctrl_c_keeps_the_records_and_leaves_nothing_behind():
    # Temporary folders of this run only, readable by the postgres user (as /tmp is).
    scratch = Path(tempfile.mkdtemp(prefix="durosim-test-"))
    scratch.chmod(0o755)
    out = scratch / "interrupted.jsonl"
    process = durosim(
        "record", "--rtt-ms", 10, "--fanout", 2, "--warmup", 1, "--count", 500, "--out", out,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 4:
            break
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()[1]
    servers = _processes_mentioning(str(scratch))
    proxies = _children(process.pid)
    assert servers and proxies, "a postgres server and the proxy run while recording"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1].startswith("durosim: error: interrupted;")
    trace = read_trace(out)
    assert len(trace.orchestrations) >= 3
    time.sleep(0.2)
    assert not [pid for pid in servers + proxies if Path(f"/proc/{pid}").exists()]
    assert sorted(p.name for p in scratch.iterdir()) == [out.name], "temporary folders removed"
    out.unlink()
    scratch.rmdir()
