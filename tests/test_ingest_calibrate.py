"""Reading duroxide's logs and timing exports, and fitting a scenario to them."""

import json

import pytest
from click.testing import CliRunner

from durosim.cli import main
from durosim.evidence.calibrate import CalibrationError, fit
from durosim.evidence.ingest import IngestError, parse_duration_ms, read_logs
from durosim.evidence.trace_format import read_trace
from durosim.model.scenario import load

LOG_RTT_MS = 50.76  # the lab's measured `select 1` time for this run


@pytest.fixture
def log(root):
    return root / "traces/logs/duroxide-0.2.2-pg15-rtt50.jsonl"


def test_the_shared_log_is_read_whole(log):
    data = read_logs([log])
    assert data.lines == 4181
    assert len(data.statements) > 2000 and len(data.provider_calls) > 500
    assert data.slots == {"orch": {0, 1}, "work": {0, 1}}
    assert data.core_version == "0.1.32"
    assert sum(data.skipped.values()) + data.used == data.lines


def test_calibrate_recovers_the_rtt_and_the_pool_ping(log):
    result = fit(read_logs([log]))
    assert result.rtt_ms == pytest.approx(LOG_RTT_MS, rel=0.05)
    assert result.ping_round_trips == pytest.approx(1.0, abs=0.1)
    assert result.server["fetch_orchestration_item"].p50_ms > result.server["fetch_history"].p50_ms
    assert (result.orchestration_concurrency, result.worker_concurrency, result.fanout) == (2, 2, 5)
    assert result.runtime == "duroxide-0.2"


def test_compact_text_and_bare_seed_lines(tmp_path):
    path = tmp_path / "compact.log"
    lines = []
    for i in range(8):
        ms = 150.2 + i * 0.1
        lines.append(
            f"2025-11-10T12:00:0{i}.100000Z DEBUG read{{instance=i-1}}: sqlx::query: "
            f'summary="SELECT out_event_data FROM s.fetch_history($1)" db.statement="" '
            f"rows_affected=0 rows_returned=3 elapsed={ms}ms elapsed_secs={ms / 1000}"
        )
    lines.append("elapsed=153.710333ms  - fetch_work_item")
    lines.append("this line is junk")
    path.write_text("\n".join(lines) + "\n")
    data = read_logs([path])
    assert len(data.statements) == 9
    assert data.skipped["unrecognised line"] == 1
    assert fit(data).rtt_ms == pytest.approx(150.4, abs=0.3)


def test_timing_exports_give_server_time(tmp_path):
    psql = tmp_path / "timings.txt"
    psql.write_text(
        "procedure_name            | calls | avg_ms | min_ms | max_ms | p95_ms\n"
        "--------------------------|-------|--------|--------|--------|--------\n"
        "fetch_orchestration_item  | 100   | 5.2    | 2.1    | 15.3   | 8.7\n"
        "ack_orchestration_item    | 100   | 8.1    | 3.5    | 22.1   | 12.4\n"
        "some_other_proc           | 3     | 1.0    | 1.0    | 1.0    | 1.0\n"
    )
    stats = tmp_path / "pg_stat_statements.csv"
    stats.write_text(
        "query,calls,total_exec_time,mean_exec_time\n"
        '"SELECT * FROM s.fetch_work_item($1, $2)",500,150.0,0.3\n'
        '"SELECT s.ack_worker($1, $2, $3)",500,115.0,0.23\n'
    )
    data = read_logs([psql, stats])
    assert data.timings["fetch_orchestration_item"].mean_ms == 5.2
    assert data.timings["ack_work_item"].mean_ms == 0.23
    assert data.skipped["timing row of no provider operation"] == 1


def test_a_log_and_a_timing_export_together(log, tmp_path):
    export = tmp_path / "t.csv"
    export.write_text("procedure_name,calls,avg_ms\nfetch_history,10,0.13\nack_worker,10,0.23\n")
    result = fit(read_logs([log, export]))
    assert result.server["ack_work_item"].p50_ms == pytest.approx(0.23)
    assert "timing export" in result.server["ack_work_item"].source
    assert result.rtt_ms == pytest.approx(LOG_RTT_MS, rel=0.05)


def test_junk_truncated_and_empty_inputs(tmp_path, log):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(IngestError, match="nothing durosim can use"):
        read_logs([junk])
    truncated = tmp_path / "truncated.jsonl"
    text = log.read_text()
    truncated.write_text(text[: len(text) // 3] + '{"timestamp": "2026-11-27T10:0')
    data = read_logs([truncated])
    assert data.skipped["not JSON"] == 1
    assert fit(data).rtt_ms == pytest.approx(LOG_RTT_MS, rel=0.05)
    few = tmp_path / "few.jsonl"
    few.write_text("\n".join(text.splitlines()[:20]) + "\n")
    with pytest.raises(CalibrationError, match="at least 5"):
        fit(read_logs([few]))
    with pytest.raises(IngestError, match="no such file"):
        read_logs([tmp_path / "missing.log"])


@pytest.mark.parametrize(
    "text, ms",
    [("153.7ms", 153.7), ("1.5s", 1500.0), ("850µs", 0.85), ("12ns", 1.2e-5), ("x", None)],
)
def test_durations(text, ms):
    assert parse_duration_ms(text) == (pytest.approx(ms) if ms is not None else None)


def test_ingest_then_calibrate_then_run(log, tmp_path):
    runner = CliRunner()
    trace = tmp_path / "calls.jsonl"
    result = runner.invoke(main, ["ingest", str(log), "--out", str(trace)])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output
    loaded = read_trace(trace)
    assert len(loaded.calls) == 2070
    assert sum(1 for c in loaded.calls if c.call_ms is not None) == 514
    assert loaded.conditions["rtt_ms"] == pytest.approx(LOG_RTT_MS, rel=0.05)
    scenario = tmp_path / "fitted.toml"
    result = runner.invoke(main, ["calibrate", str(trace), "--out", str(scenario), "--json"])
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.output)
    assert fitted["rtt_ms"] == pytest.approx(LOG_RTT_MS, rel=0.05)
    assert set(fitted["server_ms"]) >= {"fetch_orchestration_item", "ack_work_item"}
    s = load(scenario)
    assert s.network.rtt.mean * 1000 == pytest.approx(fitted["rtt_ms"], rel=1e-3)
    assert s.pool.ping_on_acquire
    assert runner.invoke(main, ["run", str(scenario), "--replications", "1"]).exit_code == 0


def test_bad_inputs_are_one_line_errors(tmp_path):
    runner = CliRunner()
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n")
    for args in (
        ["ingest", str(junk), "--out", str(tmp_path / "o.jsonl")],
        ["calibrate", str(junk)],
        ["calibrate", str(tmp_path / "missing")],
        ["ingest", str(junk), "--out", str(tmp_path / "no/o.jsonl")],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, args
        assert len(result.output.strip().splitlines()) == 1
        assert "Traceback" not in result.output
