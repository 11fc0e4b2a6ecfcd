"""The `durosim` command as a user meets it."""

import json

import pytest
from click.testing import CliRunner

from durosim.cli import main
from durosim.evidence.trace_format import read_trace


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def test_run_prints_what_a_user_asks_first(cli, root):
    result = cli("run", root / "configs/lab.toml", "--replications", 2)
    assert result.exit_code == 0, result.output
    for text in (
        "latency (ms)",
        "throughput",
        "DB calls per orchestration",
        "fetch_orchestration_item (empty)",
        "where the time goes",
        "pool_wait",
    ):
        assert text in result.output


def test_run_json_has_the_documented_keys_and_the_breakdown_adds_up(cli, root):
    result = cli(
        "run",
        root / "configs/lab.toml",
        "--json",
        "--replications",
        2,
        "--set",
        "network.rtt_ms=20",
    )
    assert result.exit_code == 0
    out = json.loads(result.output)
    for key in (
        "completed",
        "throughput_per_s",
        "latency_ms",
        "calls_per_orchestration",
        "turns_per_orchestration",
        "breakdown_ms",
    ):
        assert key in out
    assert set(out["latency_ms"]) >= {"mean", "p50", "p95", "p99"}
    assert sum(out["breakdown_ms"].values()) == pytest.approx(out["latency_ms"]["mean"], abs=0.05)
    assert out["calls_per_orchestration"]["ack_work_item"] == 5.0


def test_seed_and_set_change_the_result(cli, root):
    def mean(*extra):
        result = cli("run", root / "configs/lab.toml", "--json", "--replications", 1, *extra)
        return json.loads(result.output)["latency_ms"]["mean"]

    assert mean() == mean()
    assert mean("--seed", 7) != mean()
    assert mean("--set", "network.rtt_ms=5") < mean()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "network.rt=5"], "unknown key 'network.rt'"),
        (["--set", "workload.mode=fast"], "'fast' is not allowed"),
        (["--set", "workload.fanout=0"], "workload.fanout: must be >= 1"),
        (["--set", "runtime_options"], "expected KEY=VALUE"),
        (["--set", 'runtime="duroxide-9"'], "'duroxide-9' is not allowed"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, root, args, message):
    result = cli("run", root / "configs/lab.toml", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_missing_or_broken_scenario_file(cli, tmp_path):
    assert cli("run", tmp_path / "nope.toml").exit_code == 2
    broken = tmp_path / "broken.toml"
    broken.write_text("[network\nrtt_ms = 5")
    result = cli("run", broken)
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_validate_json_shape(cli, root):
    result = cli(
        "validate", root / "traces/lab/rtt50_f5_2x2_seq.jsonl", "--json", "--replications", 3
    )
    out = json.loads(result.output)
    assert set(out) == {"traces", "ok"}
    entry = out["traces"][0]
    assert {"trace", "measured", "predicted", "errors_pct", "ok"} <= set(entry)
    assert set(entry["measured"]) == {"mean_ms", "p50_ms", "p95_ms", "throughput_per_s"}
    assert result.exit_code == (0 if out["ok"] else 1)


def test_validate_exits_1_outside_tolerance(cli, root):
    result = cli(
        "validate",
        root / "traces/lab/rtt50_f5_2x2_seq.jsonl",
        "--tolerance",
        "0",
        "--replications",
        2,
    )
    assert result.exit_code == 1
    assert "OUTSIDE" in result.output
    assert "Wasserstein" in result.output


def test_validate_infer_reports_the_rtt(cli, root):
    result = cli(
        "validate",
        root / "traces/published/azure-152ms-2x2.jsonl",
        "--infer",
        "rtt",
        "--json",
        "--replications",
        4,
    )
    entry = json.loads(result.output)["traces"][0]
    assert entry["stated_rtt_ms"] == 152
    assert 60 < entry["inferred_rtt_ms"] < 120


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty file"),
        ("not json\n", "not valid JSON"),
        ('{"format": "other"}\n', "durosim-trace/1"),
        (
            '{"format": "durosim-trace/1", "conditions": {"rtt_ms": 5}}\n'
            '{"type": "orchestration", "start_ms": "x", "end_ms": 1}\n',
            "'start_ms' must be",
        ),
        (
            '{"format": "durosim-trace/1", "conditions": {"rtt_ms": 5, "runtime": "x"}}\n'
            '{"type": "orchestration", "start_ms": 0, "end_ms": 1}\n',
            "conditions.runtime",
        ),
        (
            '{"format": "durosim-trace/1", "conditions": {"rtt_ms": 5, "fanout": 0}}\n'
            '{"type": "orchestration", "start_ms": 0, "end_ms": 1}\n',
            "workload.fanout",
        ),
    ],
)
def test_validate_rejects_bad_traces_clearly(cli, tmp_path, content, message):
    path = tmp_path / "t.jsonl"
    path.write_text(content)
    result = cli("validate", path)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_validate_rejects_bad_tolerance_and_missing_folder(cli, root, tmp_path):
    trace = root / "traces/lab/rtt50_f5_2x2_seq.jsonl"
    assert cli("validate", trace, "--tolerance", "p97_ms=3").exit_code == 2
    assert cli("validate", trace, "--tolerance", "lots").exit_code == 2
    assert cli("validate", tmp_path).exit_code == 2
    assert cli("validate", trace, "--report", tmp_path / "no" / "r.md").exit_code == 2


def test_a_simulated_trace_reads_back_and_validates_against_itself(cli, root, tmp_path):
    out = tmp_path / "sim.jsonl"
    result = cli(
        "run",
        root / "configs/lab.toml",
        "--replications",
        1,
        "--trace",
        out,
        "--set",
        "network.rtt_ms=30",
    )
    assert result.exit_code == 0
    trace = read_trace(out)
    assert len(trace.measured) == 20 and trace.calls
    assert trace.conditions["rtt_ms"] == 30
    assert cli("validate", out, "--replications", 5).exit_code == 0


def test_validate_writes_a_report_and_a_plot(cli, root, tmp_path):
    report, plot = tmp_path / "v.md", tmp_path / "v.png"
    cli(
        "validate",
        root / "traces/lab/rtt50_f5_2x2_seq.jsonl",
        "--replications",
        2,
        "--report",
        report,
        "--plot",
        plot,
    )
    assert "rtt50_f5_2x2_seq" in report.read_text()
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_run_draws_a_timeline_and_writes_trace_events(cli, root, tmp_path):
    timeline, events = tmp_path / "t.png", tmp_path / "t.json"
    result = cli(
        "run",
        root / "configs/lab.toml",
        "--replications",
        1,
        "--timeline",
        timeline,
        "--trace-events",
        events,
    )
    assert result.exit_code == 0, result.output
    assert timeline.read_bytes()[:4] == b"\x89PNG"
    trace = json.loads(events.read_text())
    phases = {e["ph"] for e in trace["traceEvents"]}
    assert phases == {"M", "X"}
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert {"client", "orch-0", "work-1", "connection 0", "measured"} <= names
    assert all(e["dur"] >= 0 for e in trace["traceEvents"] if e["ph"] == "X")
    assert cli("run", root / "configs/lab.toml", "--timeline", tmp_path / "t.gif").exit_code == 2


@pytest.mark.parametrize(
    "extra",
    [
        ['workload.mode="open"', "host.nodes=2", "workload.duration_s=5"],
        ['workload.mode="stress"', "workload.in_flight=4", "workload.duration_s=2"],
        ['workload.mode="closed"', "workload.in_flight=3", "workload.count=6"],
    ],
)
def test_run_describes_every_mode(cli, root, extra):
    args = [a for e in extra for a in ("--set", e)]
    result = cli("run", root / "configs/lab.toml", "--replications", 1, *args)
    assert result.exit_code == 0, result.output
    assert "latency (ms)" in result.output


def test_a_bad_arrival_trace_is_refused_at_load(cli, root, tmp_path):
    result = cli("run", root / "configs/lab.toml", "--set", 'workload.mode="open"',
                 "--set", f'workload.arrival_trace="{tmp_path / "none.jsonl"}"')  # fmt: skip
    assert result.exit_code == 2 and "no such file" in result.output


def test_shipped_scenarios_run_by_name_from_any_folder(cli, root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listed = cli("scenarios")
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.output.splitlines()]
    assert names == sorted(p.stem for p in (root / "configs").glob("*.toml"))
    by_name = cli("run", "lab", "--replications", 1, "--json")
    by_path = cli("run", root / "configs/lab.toml", "--replications", 1, "--json")
    assert by_name.exit_code == 0 and by_name.output == by_path.output


def test_an_unknown_scenario_name_lists_the_shipped_ones(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("run", "labb")
    assert result.exit_code == 2
    assert "no such file or shipped scenario" in result.output and "local-docker" in result.output


def test_a_file_in_the_current_folder_wins_over_a_shipped_name(cli, root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab").write_text('name = "mine"\n[network]\nrtt_ms = 3\n')
    result = cli("run", "lab", "--replications", 1, "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["scenario"] == "mine"


def test_a_relative_arrival_trace_resolves_against_the_scenario_file(cli, root, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "arrivals.jsonl").write_text((root / "traces/lab/rtt50_f5_2x2_seq.jsonl").read_text())
    (folder / "replay.toml").write_text(
        '[workload]\nmode = "open"\narrival_trace = "arrivals.jsonl"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("run", "../plans/replay.toml", "--replications", 1)
    assert result.exit_code == 0, result.output
    assert "arrivals replayed from" in result.output


def test_an_open_trace_on_two_nodes_validates_against_itself(cli, root, tmp_path):
    """A simulated open-loop run past saturation, written as a trace, is replayed by validate:
    its arrival times, its two nodes with the client on the first, and its wait timeout, so the
    failures come out as the run had them."""
    path = tmp_path / "open.jsonl"
    settings = [
        'workload.mode="open"', "workload.arrival_rate_per_s=6", "workload.duration_s=30",
        "workload.wait_timeout_ms=8000", "network.rtt_ms=20", "host.nodes=2",
        "host.client_nodes=1",
    ]  # fmt: skip
    args = [a for s in settings for a in ("--set", s)]
    ran = cli("run", root / "configs/lab.toml", *args, "--replications", 1, "--trace", path)
    assert ran.exit_code == 0, ran.output
    assert "past saturation" in ran.output and "client" in ran.output
    trace = read_trace(path)
    c = trace.conditions
    assert (c["mode"], c["nodes"], c["client_nodes"], c["wait_timeout_ms"]) == ("open", 2, 1, 8000)
    assert trace.failures, "past saturation some waits time out"
    result = cli("validate", path, "--json", "--replications", 2)
    (row,) = json.loads(result.output)["traces"]
    assert row["measured"]["failed"] == len(trace.failures)
    assert row["predicted"]["failed"] >= 1
    assert (
        row["measured"]["failed"] / 1.5
        <= row["predicted"]["failed"]
        <= (row["measured"]["failed"] * 1.5)
    )


@pytest.mark.parametrize(
    "conditions, message",
    [
        ({"mode": "open", "rtt_ms": 20}, "needs conditions.arrival_rate_per_s"),
        ({"mode": "open", "rtt_ms": 20, "arrival_rate_per_s": 1, "nodes": 0}, "nodes"),
        ({"mode": "open", "rtt_ms": 20, "arrival_rate_per_s": -1}, "arrival_rate_per_s"),
        ({"mode": "open", "rtt_ms": 20, "arrival_rate_per_s": 1, "wait_timeout_ms": 0}, "wait"),
    ],
)
def test_a_bad_open_trace_is_one_line(cli, tmp_path, conditions, message):
    path = tmp_path / "bad.jsonl"
    header = {"format": "durosim-trace/1", "source": "test", "conditions": conditions}
    record = {"type": "orchestration", "instance": "a", "start_ms": 0, "end_ms": 900}
    path.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n")
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, key",
    [
        (["options", "--json"], "options"),
        (["scenarios", "--json"], "scenarios"),
    ],
)
def test_listing_commands_take_json(cli, args, key):
    result = cli(*args)
    assert result.exit_code == 0
    rows = json.loads(result.output)[key]
    assert rows and all("name" in row for row in rows)


def test_ingest_and_sweep_take_json(cli, root, tmp_path):
    ingested = cli("ingest", root / "traces/logs/duroxide-0.2.2-pg15-rtt50.jsonl", "--out",
                   tmp_path / "calls.jsonl", "--json")  # fmt: skip
    report = json.loads(ingested.output)
    assert report["call_records"] > 0 and report["used"] <= report["lines"]
    swept = cli("sweep", "lab", "--grid", "network.rtt_ms=10,20", "--replications", 1, "--out",
                tmp_path / "rows.csv", "--json")  # fmt: skip
    rows = json.loads(swept.stdout)["rows"]
    assert [r["network.rtt_ms"] for r in rows] == ["10", "20"]


def test_show_prints_the_scenario_resolved_and_it_loads_back(cli, tmp_path):
    from durosim.model.scenario import load

    shown = cli("show", "order-service", "--set", "network.rtt_ms=35")
    assert shown.exit_code == 0
    assert shown.output.startswith("# order-service, resolved by durosim")
    path = tmp_path / "resolved.toml"
    path.write_text(shown.output)
    assert load(path) == load("order-service", ["network.rtt_ms=35"])


def test_run_save_keeps_a_run_folder_and_overwrites_nothing(cli, tmp_path):
    folder = tmp_path / "run"
    result = cli("run", "lab", "--replications", 2, "--save", folder)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "results.csv", "results.json", "scenario.toml", "timeline.png", "trace.jsonl",
    ]  # fmt: skip
    saved = json.loads((folder / "results.json").read_text())
    again = json.loads(cli("run", "lab", "--replications", 2, "--json").output)
    assert saved == again and saved["provenance"]["scenario_digest"]
    before = (folder / "results.json").read_text()
    refused = cli("run", "lab", "--save", folder)
    assert refused.exit_code == 2 and "nothing is overwritten" in refused.output
    assert (folder / "results.json").read_text() == before


def test_init_writes_a_template_that_loads_to_the_defaults(cli, tmp_path, monkeypatch):
    from durosim.model.scenario import Scenario, load

    monkeypatch.chdir(tmp_path)
    assert cli("init", "mysite").exit_code == 0
    text = (tmp_path / "mysite.toml").read_text()
    assert "# max_connections = 100" in text and "\nrtt_ms = 0.5\n" in text
    loaded = load(tmp_path / "mysite.toml")
    assert loaded == Scenario(name="mysite", description=loaded.description)
    again = cli("init", "mysite")
    assert again.exit_code == 2 and "nothing is overwritten" in again.output


def test_figures_are_written_as_pdf_too(cli, tmp_path):
    path = tmp_path / "options.pdf"
    result = cli("compare", "lab", "colocate", "--replications", 2, "--plot", path)
    assert result.exit_code == 0
    assert path.read_bytes().startswith(b"%PDF")
    refused = cli("run", "lab", "--timeline", tmp_path / "t.gif")
    assert refused.exit_code == 2 and ".png, .svg or .pdf" in refused.output


def test_ctrl_c_in_validate_keeps_what_finished_and_exits_130(root):
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-c", "from durosim.cli import main; main()", "validate",
         str(root / "traces/recorded"), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(8.0)  # some of the 46 traces (about 25 s in all) are done by then
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("durosim: error: interrupted: ")
    done = json.loads(out)
    assert done["interrupted"] is True and 0 < len(done["traces"]) < 40
