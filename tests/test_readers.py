"""The log and trace readers never crash: a line they cannot use is counted and skipped, a file
they cannot use is one line naming why, and nothing they return holds a number that is not
finite. Calibration never writes a scenario the loader would refuse."""

import json
import math
import tomllib

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durosim.cli import main
from durosim.evidence.calibrate import CalibrationError, fit, scenario_toml
from durosim.evidence.ingest import MAX_DURATION_MS, IngestError, read_logs
from durosim.evidence.trace_format import TraceError, read_trace
from durosim.model.scenario import load_table


def _statement(i: int, elapsed: object, procedure: str = "fetch_history") -> dict:
    return {
        "timestamp": f"2025-11-10T12:00:{i % 60:02d}.{i:06d}Z",
        "level": "DEBUG",
        "target": "sqlx::query",
        "fields": {"summary": f"SELECT {procedure}($1)", "elapsed": elapsed},
    }


GOOD = [json.dumps(_statement(i, f"{20 + i % 3}.5ms")) for i in range(8)]

# Each line once crashed the reader (or would have); each must be skipped for the reason given.
ODD_LINES = [
    (json.dumps({**_statement(0, "1.2ms"), "timestamp": 1e300}), None),
    (json.dumps(_statement(0, "1.2.3ms")), "statement without a usable elapsed"),
    (json.dumps(_statement(0, "9" * 400 + "ms")), "statement without a usable elapsed"),
    (json.dumps(_statement(0, "-3ms")), "statement without a usable elapsed"),
    ('{"fields": ' + "[" * 100_000 + "]" * 100_000 + "}", "JSON nested too deeply"),
    ('{"fields": {"x": ' + "9" * 5000 + "}}", "not JSON"),
    ("x" * 140_000, "unrecognised line"),
    (
        json.dumps(
            {
                "target": "duroxide::runtime",
                "fields": {"message": "duroxide runtime (1..2) started"},
            }
        ),
        "runtime event not used",
    ),
    (
        json.dumps(
            {
                "target": "duroxide_pg::provider",
                "fields": {"operation": "fetch_work_item", "duration_ms": float("nan")},
            }
        ),
        "provider line without operation or usable duration",
    ),
]


def _write(path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("line, reason", ODD_LINES)
def test_an_odd_log_line_is_skipped_and_counted(line, reason, tmp_path):
    data = read_logs([_write(tmp_path / "log.jsonl", [line] + GOOD)])
    assert len(data.statements) == len(GOOD) + (reason is None)
    if reason is not None:
        assert data.skipped[reason] == 1
    assert all(0 <= s.elapsed_ms <= MAX_DURATION_MS for s in data.statements)


@pytest.mark.parametrize("line, reason", [odd for odd in ODD_LINES if odd[1]])
def test_a_log_of_only_odd_lines_is_one_line_naming_why(line, reason, tmp_path):
    with pytest.raises(IngestError, match="lines skipped: 1 " + reason):
        read_logs([_write(tmp_path / "log.jsonl", [line])])


def test_a_timing_export_with_nan_or_inf_counts_skips_its_rows(tmp_path):
    path = _write(
        tmp_path / "timings.csv",
        [
            "procedure_name,calls,avg_ms",
            "fetch_history,nan,0.2",
            "fetch_work_item,inf,0.3",
            "ack_worker,5,nan",
            "fetch_orchestration_item,12,0.4",
        ],
    )
    data = read_logs([path])
    assert list(data.timings) == ["fetch_orchestration_item"]
    assert data.skipped["timing row without a usable mean or call count"] == 3


def test_a_slot_id_of_thirty_digits_is_not_a_concurrency(tmp_path):
    line = json.dumps(
        {
            "target": "duroxide::runtime",
            "fields": {"message": "fetched", "worker_id": "orch-" + "9" * 30 + "-node"},
        }
    )
    result = fit(read_logs([_write(tmp_path / "log.jsonl", [line] + GOOD)]))
    assert result.orchestration_concurrency is None
    load_table(tomllib.loads(scenario_toml(result)))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELD_VALUES = st.one_of(
    JSON_VALUES,
    st.from_regex(r"-?[0-9.]{0,8}(ns|µs|us|ms|s)?", fullmatch=True),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    timestamp=JSON_VALUES,
    target=st.sampled_from(["sqlx::query", "duroxide_pg::provider", "duroxide::runtime", "x"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "summary",
                "elapsed",
                "elapsed_secs",
                "rows_returned",
                "duration_ms",
                "operation",
                "message",
                "worker_id",
                "instance_id",
            ]
        ),  # fmt: skip
        FIELD_VALUES,
        max_size=6,
    ),
    text=st.text(max_size=200),
)
def test_no_log_line_crashes_the_reader(timestamp, target, fields, text, tmp_path):
    event = {"timestamp": timestamp, "level": "DEBUG", "target": target, "fields": fields}
    lines = [json.dumps(event), text.replace("\n", " ").replace("\r", " ")] + GOOD
    data = read_logs([_write(tmp_path / "log.jsonl", lines)])
    assert len(data.statements) >= len(GOOD)
    assert all(math.isfinite(s.elapsed_ms) for s in data.statements)
    assert all(math.isfinite(c.duration_ms) for c in data.provider_calls)
    assert all(math.isfinite(a) for a in data.activities_ms)


@settings(max_examples=60, deadline=None)
@given(elapsed=st.lists(st.floats(min_value=0, max_value=MAX_DURATION_MS), min_size=5, max_size=30))
def test_calibration_writes_only_scenarios_the_loader_accepts(elapsed):
    from durosim.evidence.ingest import LogData, Statement

    data = LogData(paths=["generated"])
    data.statements = [
        Statement("fetch_history", False, ms, i * 1.0) for i, ms in enumerate(elapsed)
    ]
    try:
        text = scenario_toml(fit(data))
    except CalibrationError:
        return
    scenario = load_table(tomllib.loads(text))
    assert math.isfinite(scenario.network.rtt.mean)


HEADER = json.dumps({"format": "durosim-trace/1", "source": "test", "conditions": {}})
GOOD_RECORD = json.dumps({"type": "orchestration", "instance": "a", "start_ms": 0, "end_ms": 5})


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    record=st.dictionaries(
        st.sampled_from(
            [
                "type",
                "start_ms",
                "end_ms",
                "instance",
                "status",
                "warmup",
                "completed",
                "throughput_per_s",
                "total_s",
                "op",
                "call_ms",
                "workflow",
            ]
        ),  # fmt: skip
        st.one_of(JSON_VALUES, st.sampled_from(["orchestration", "summary", "call"])),
        max_size=8,
    )
)
def test_no_trace_record_crashes_the_reader(record, tmp_path):
    path = _write(tmp_path / "trace.jsonl", [HEADER, GOOD_RECORD, json.dumps(record)])
    try:
        trace = read_trace(path)
    except TraceError as err:
        assert "\n" not in str(err) and str(err).startswith(path)
        return
    for o in trace.orchestrations:
        assert math.isfinite(o.start_ms) and math.isfinite(o.end_ms) and o.end_ms >= o.start_ms
    for c in trace.calls:
        assert c.call_ms is None or math.isfinite(c.call_ms)


@pytest.mark.parametrize(
    "line, message",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"type": "call", "start_ms": ' + "9" * 5000 + "}", "not a trace record"),
        ('{"type": "call", "op": "x", "start_ms": 0, "end_ms": 1, "call_ms": NaN}', "finite"),
    ],
)
def test_an_odd_trace_record_is_one_line(line, message, tmp_path):
    with pytest.raises(TraceError, match=message):
        read_trace(_write(tmp_path / "trace.jsonl", [HEADER, GOOD_RECORD, line]))


@pytest.mark.parametrize(
    "args",
    [
        ["run", "/dev/zero"],
        ["validate", "/dev/zero"],
        ["ingest", "/dev/zero", "--out", "out.jsonl"],
        ["calibrate", "/dev/zero"],
    ],
)
def test_a_device_as_input_is_one_line(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "not a regular file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_ingest_writes_nothing_when_no_statement_has_a_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "log.txt", ["elapsed=156.1ms - fetch_history"] * 3)
    result = CliRunner().invoke(main, ["ingest", "log.txt", "--out", "out.jsonl"])
    assert result.exit_code == 2 and "no statement with a timestamp" in result.output
    assert not (tmp_path / "out.jsonl").exists()


def test_calibrate_with_zero_ms_calls_reports_without_dividing_by_zero(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = []
    for i in range(8):
        lines.append(json.dumps({**_statement(i, "0ms", "fetch_work_item"),
                                 "fields": {"summary": "SELECT fetch_work_item($1)",
                                            "elapsed": "0ms", "rows_returned": 1}}))  # fmt: skip
        lines.append(json.dumps(_statement(i, "0ms")))
        lines.append(
            json.dumps(
                {
                    "timestamp": f"2025-11-10T12:00:{i % 60:02d}.{i:06d}Z",
                    "target": "duroxide_pg::provider",
                    "fields": {"operation": "fetch_work_item", "duration_ms": 0},
                }
            )
        )
    _write(tmp_path / "log.jsonl", lines)
    result = CliRunner().invoke(main, ["calibrate", "log.jsonl", "--out", "fit.toml"])
    assert result.exit_code == 0, result.output
    load_table(tomllib.loads((tmp_path / "fit.toml").read_text()))


def _stress_trace(tmp_path, duration_s: float) -> str:
    conditions = {"runtime": "duroxide-0.2", "rtt_ms": 1, "fanout": 5, "activity_ms": 10,
                  "mode": "stress", "in_flight": 20, "duration_s": duration_s}  # fmt: skip
    header = json.dumps({"format": "durosim-trace/1", "source": "test", "conditions": conditions})
    summary = json.dumps({"type": "summary", "completed": 20, "throughput_per_s": 2, "total_s": 10})
    return _write(tmp_path / "stress.jsonl", [header, summary])


def test_validate_refuses_a_replay_far_beyond_the_limit_before_simulating(tmp_path):
    path = _stress_trace(tmp_path, 1e7)
    result = CliRunner().invoke(main, ["validate", path])
    assert result.exit_code == 2, result.output
    assert "simulation events" in result.output and "--large" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("infer", [False, True])
def test_validate_reports_each_replication_it_simulates(infer, tmp_path):
    """The progress of validate counts replications; an RTT search that ends at a bound of its
    range simulates fewer than its most."""
    from durosim.evidence.validate import compare, work

    trace = read_trace(_stress_trace(tmp_path, 2))
    ticks = []
    compare(trace, replications=3, infer=infer, on_replication=lambda: ticks.append(1))
    if infer:
        assert 3 + 2 * 3 <= len(ticks) <= work(trace, 3, infer)
    else:
        assert len(ticks) == work(trace, 3, infer) == 3


def test_validate_where_nothing_completes_prints_no_nan(tmp_path):
    conditions = {"runtime": "duroxide-0.2", "rtt_ms": 200000, "fanout": 5, "activity_ms": 10,
                  "mode": "sequential", "count": 3}  # fmt: skip
    header = json.dumps({"format": "durosim-trace/1", "source": "test", "conditions": conditions})
    record = json.dumps({"type": "orchestration", "instance": "a", "start_ms": 0, "end_ms": 5e6})
    path = _write(tmp_path / "slow.jsonl", [header, record])
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(main, ["validate", path, "--replications", "1", *extra])
        assert result.exit_code == 1, result.output
        assert "nan" not in result.output.lower() and "infinity" not in result.output.lower()
    assert json.loads(result.output)["traces"][0]["predicted"]["throughput_per_s"] == 0
