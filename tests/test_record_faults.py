"""`durosim record --fault`: the spec's grammar and what a run can apply, the delay proxy's pause
(held bytes arrive after it, connections stay open), activity executions counted across
processes, and one real recording with the database stopped and a node crashed and restarted."""

import json
import socket
import time

import pytest
from click.testing import CliRunner

from durosim.cli import main
from durosim.evidence.trace_format import read_trace
from durosim.lab.delay_proxy import DelayProxy, ProxyProcess
from durosim.lab.executions import counter, totals
from durosim.lab.faults import Fault, check_faults, parse_fault
from durosim.sim.errors import InputError
from tests.test_delay_proxy import _connect, _exchange, echo_port  # noqa: F401 - a fixture
from tests.test_record import run


@pytest.mark.parametrize(
    "spec, fault",
    [
        ("database@10+8", Fault("database", 10.0, 8.0, None, "database@10+8")),
        ("link@12.5+3", Fault("link", 12.5, 3.0, None, "link@12.5+3")),
        ("node2@10", Fault("node", 10.0, None, 2, "node2@10")),
        ("node3@0+20", Fault("node", 0.0, 20.0, 3, "node3@0+20")),
    ],
)
def test_a_spec_is_parsed(spec, fault):
    assert parse_fault(spec) == fault


def test_the_header_form_of_a_fault():
    assert parse_fault("node2@10").condition() == {
        "kind": "node",
        "node": 2,
        "start_s": 10.0,
        "duration_s": None,
    }
    assert parse_fault("link@1+2").condition() == {
        "kind": "link",
        "start_s": 1.0,
        "duration_s": 2.0,
    }


OPEN = ["--mode", "open", "--rate", "1", "--duration-s", "10"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fault", "disk@1+2"], "--fault 'disk@1+2': expected database@START+DURATION"),
        (["--fault", "database@"], "--fault 'database@': expected"),
        (["--fault", "database@-1+2"], "--fault 'database@-1+2': expected"),
        (["--fault", "link@1+-2"], "--fault 'link@1+-2': expected"),
        (["--fault", "database@5"], "say when: database@START+DURATION"),
        (["--rtt-ms", "5", "--fault", "link@1+0"], "DURATION must be > 0"),
        (["--fault", "link@1+2"], "it needs --rtt-ms > 0"),
        (["--dsn", "postgres://x@h/db", "--fault", "database@1+1"], "not --dsn"),
        (["--nodes", "2", "--fault", "node1@3"], "expected node2..node2 (--nodes 2); node 1"),
        (["--nodes", "2", "--fault", "node3@3"], "expected node2..node2"),
        (["--fault", "node2@3"], "node 1 runs the client and cannot be crashed; add --nodes"),
        ([*OPEN, "--fault", "database@20+1"], "START is after the run's 10 s"),
        (
            ["--fault", "database@1+5", "--fault", "database@3+1"],
            "--fault 'database@3+1' overlaps --fault 'database@1+5'",
        ),
        (
            ["--nodes", "2", "--fault", "node2@1", "--fault", "node2@30+1"],
            "overlaps --fault 'node2@1'",
        ),
    ],
)
def test_a_bad_fault_is_a_one_line_error_and_nothing_is_written(tmp_path, args, message):
    out = tmp_path / "x.jsonl"
    result = CliRunner().invoke(main, ["record", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in result.output
    assert not out.exists()


def test_faults_of_different_resources_may_overlap_and_one_may_follow_another():
    faults = tuple(
        parse_fault(s) for s in ("database@1+5", "link@2+1", "node2@3+1", "node2@4", "link@3+1")
    )
    check_faults(faults, nodes=2, rtt_ms=10.0, dsn=None, run_s=10.0)
    with pytest.raises(InputError, match="overlaps"):
        check_faults(faults + (parse_fault("node2@9"),), 2, 10.0, None, 10.0)


def _held_then_delivered(proxy, rtt_ms: float) -> tuple[float, float]:
    """Pause, send, wait; resume: how long after the send the reply came, and how long after
    the resume."""
    with _connect(proxy.port) as sock:
        _exchange(sock)  # the connection is up before the pause and stays up
        proxy.pause()
        sent = time.perf_counter()
        sock.sendall(b"z" * 100)
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(100)  # nothing gets through while paused
        resumed = time.perf_counter()
        proxy.resume()
        sock.settimeout(5)
        got = b""
        while len(got) < 100:
            chunk = sock.recv(100)
            assert chunk, "the connection stayed open through the pause"
            got += chunk
        now = time.perf_counter()
        assert got == b"z" * 100
        _exchange(sock)  # and works as before after it
    return (now - sent) * 1000.0, (now - resumed) * 1000.0


def test_a_paused_proxy_holds_bytes_and_delivers_them_after_the_pause(echo_port):  # noqa: F811
    with DelayProxy("127.0.0.1", echo_port, 20.0) as proxy:
        since_send_ms, since_resume_ms = _held_then_delivered(proxy, 20.0)
    assert since_send_ms >= 300.0
    # held bytes leave RTT/2 after the resume; the reply takes the other half
    assert 20.0 <= since_resume_ms < 20.0 + 40.0, since_resume_ms


def test_the_proxy_process_pauses_and_resumes_on_its_control_lines(echo_port):  # noqa: F811
    proxy = ProxyProcess("127.0.0.1", echo_port, 10.0).start()
    try:
        _, since_resume_ms = _held_then_delivered(proxy, 10.0)
    finally:
        proxy.stop()
    assert 10.0 <= since_resume_ms < 10.0 + 40.0, since_resume_ms


def test_executions_are_counted_across_processes_files(tmp_path):
    first, second = counter(tmp_path, "node1"), counter(tmp_path, "node2")
    first("i1", 1, 0)
    first("i1", 1, 1)
    second("i1", 1, 1)  # a repeat on another node
    second("i1", 2, 1)  # another execution (continue-as-new): not a repeat
    first.close()
    second.close()
    (tmp_path / "node3-1.log").write_text('["i2", 1, 0]\n["i2", 1')  # cut short by a kill
    assert totals(tmp_path) == {"total": 5, "distinct": 4}


def test_a_recording_through_a_database_outage_and_a_node_crash(tmp_path):
    path = tmp_path / "faults.jsonl"
    code, out, err = run(
        "record", "--rtt-ms", 5, "--fanout", 2, "--mode", "open", "--rate", 3, "--duration-s", 8,
        "--nodes", 2, "--warmup", 1, "--wait-timeout-ms", 10000,
        "--fault", "database@2+2", "--fault", "node2@5+1.5", "--out", path, "--json",
    timeout=120)  # fmt: skip
    assert code == 0, err
    # the runtime's warnings under the outage go to stderr, not into the JSON
    assert json.loads(out)["records"] > 0
    trace = read_trace(path)
    database, node = trace.conditions["faults"]
    assert (database["kind"], database["start_s"], database["duration_s"]) == ("database", 2.0, 2.0)
    assert 2.0 <= database["applied_s"] < 2.5
    # back once it accepts connections: the restart takes time beyond the 2 s
    assert 4.0 < database["ended_s"] < 10.0
    assert (node["kind"], node["node"], node["duration_s"]) == ("node", 2, 1.5)
    assert 5.0 <= node["applied_s"] < 5.5 and node["ended_s"] > 6.5, node
    header = json.loads(path.read_text().splitlines()[0])
    executions = header["activity_executions"]
    assert executions["total"] >= executions["distinct"] >= 2 * len(trace.measured)
    # completions resume once the server is back
    after = [o for o in trace.measured if o.start_ms > database["ended_s"] * 1000.0]
    assert after, "orchestrations started after the outage completed"
    assert trace.arrivals == len([o for o in trace.orchestrations if not o.warmup])
    assert "server" in header and header["server"]["statements"], "the watch survived"
