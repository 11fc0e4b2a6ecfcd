"""What-ifs: parsing, purity, the directions theory guarantees, and the checks against reality."""

import json

import pytest
from click.testing import CliRunner

from durosim.cli import main
from durosim.experiments.compare import compare
from durosim.model.scenario import load, load_table
from durosim.model.whatif import OPTIONS, apply
from durosim.model.world import simulate
from durosim.sim.config import ConfigError


@pytest.fixture
def lab(root):
    return load(root / "configs/lab.toml", ["replications=4"])


def calls(scenario, replication=0):
    return simulate(scenario, replication).calls_per_orchestration


@pytest.mark.parametrize(
    "spec, message",
    [
        ("warp_drive", "unknown what-if 'warp_drive'"),
        ("colocate=fast", "expected a float"),
        ("concurrency=4", "expected O:W"),
        ("pool_size", "needs a value"),
        ("long_poll=3", "takes no value"),
        ("pool_size=0", "must be a finite number >= 1"),
    ],
)
def test_bad_specs_are_refused(lab, spec, message):
    with pytest.raises(ConfigError, match=message):
        apply(lab, spec)


def test_options_are_pure_and_combine(lab):
    both = apply(lab, "colocate=2+long_poll+concurrency=4:8")
    assert lab.design.long_poll is False and lab.network.rtt.mean == pytest.approx(0.05076)
    assert both.network.rtt.mean == pytest.approx(0.002)
    assert both.design.long_poll
    assert (both.runtime_options.orchestration_concurrency,
            both.runtime_options.worker_concurrency) == (4, 8)  # fmt: skip
    assert both.name == "colocate=2+long_poll+concurrency=4:8"


def test_every_option_runs(lab):
    for name, option in OPTIONS.items():
        spec = name if option.metavar is None or option.default else f"{name}=3"
        if name == "concurrency":
            spec = "concurrency=3:3"
        result = simulate(apply(load_table({}, ["workload.count=3"]), spec), 0)
        assert result.measured == 3, spec


def test_directions_theory_guarantees(lab):
    result = compare(lab, ["colocate", "no_pool_ping", "pipelining"], 4)
    base, colocated, no_ping, pipelined = result["rows"]
    assert colocated["latency_ms"]["mean"] < 0.2 * base["latency_ms"]["mean"]
    # every call loses a round trip of 50 ms: at least 20 calls on the critical path
    assert no_ping["change"]["latency_mean_ms"]["diff"] < -500
    assert pipelined["latency_ms"]["mean"] < no_ping["latency_ms"]["mean"]


def test_call_counts_change_as_designed(lab):
    base = calls(lab)
    assert calls(apply(lab, "activity_context_cached"))["fetch_history"] == pytest.approx(
        base["fetch_history"] - 5, abs=3
    )
    notified = calls(apply(lab, "no_client_polling"))
    assert "get_custom_status" not in notified
    turned = calls(apply(lab, "server_side_turns"))
    assert "ack_orchestration_item" not in turned and turned["orchestration_turn"] >= 2
    batched = calls(apply(lab, "batch_worker_fetch"))
    assert batched["ack_work_item"] == 5  # each item still acked, in fewer calls
    polled = calls(apply(lab, "long_poll"))
    empties = "fetch_orchestration_item (empty)"
    assert (
        polled.get(empties, 0) < 0.75 * base[empties]
    )  # losers of each race still come back empty


def test_poll_interval_matches_the_lab():
    """The lab: poll 10 vs 100 ms gives 49 vs 167 ms at loopback and no difference at RTT 50
    (docs/lab/results-summary.md, finding 5); 25% at loopback, as for every trace below 20 ms."""
    loopback = load_table({}, ["network.rtt_ms=0.03", "database.cores=2"])
    rows = compare(loopback, ["poll_interval=10"], 6)["rows"]
    assert rows[0]["latency_ms"]["p50"] == pytest.approx(167, rel=0.25)
    assert rows[1]["latency_ms"]["p50"] == pytest.approx(49, rel=0.25)
    rtt50 = load_table({}, ["network.rtt_ms=50.76"])
    rows = compare(rtt50, ["poll_interval=10"], 4)["rows"]
    assert rows[1]["latency_ms"]["p50"] == pytest.approx(rows[0]["latency_ms"]["p50"], rel=0.02)


def test_long_poll_cuts_db_calls_as_measured(root):
    """duroxide-pg-opt's comparison (local, 2:2, 3 in flight, 5 tasks of 1 s, 30 s): DB calls per
    orchestration 220.4 -> 132.6, -40%. The model, with the seed-era provider (4 calls per empty
    orchestration fetch, as then), must land within 10 points of that."""
    s = load(
        root / "configs/local-docker.toml",
        ["workload.in_flight=3", "workload.activity_ms=1000", "workload.duration_s=30"],
    )
    rows = compare(s, ["long_poll"], 3)["rows"]
    before, after = (sum(r["calls_per_orchestration"].values()) for r in rows)
    assert (after - before) / before * 100 == pytest.approx(-40, abs=10)


def test_cli_options_and_compare(root):
    runner = CliRunner()
    listed = runner.invoke(main, ["options"]).output
    assert all(name in listed for name in OPTIONS)
    result = runner.invoke(
        main, ["compare", str(root / "configs/lab.toml"), "no_pool_ping", "--json",
               "--replications", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [r["option"] for r in out["rows"]] == ["baseline", "no_pool_ping"]
    change = out["rows"][1]["change"]["latency_mean_ms"]
    assert change["diff"] < 0 and change["ci"] is not None
    bad = runner.invoke(main, ["compare", str(root / "configs/lab.toml"), "nonsense"])
    assert bad.exit_code == 2 and "unknown what-if" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_report_answers_the_analysis(root, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["report", str(root / "configs/lab.toml"), "--stress",
               str(root / "configs/azure-152ms.toml"), "--out", str(tmp_path), "--rtt", "150",
               "--replications", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.md").read_text()
    for text in (
        "Option 1: reduce client polling",
        "saves ~450 ms",
        "17 round trips",
        "not a latency",
        "93%",
        "the analysis estimated 46%",
    ):
        assert text in page
    for figure in ("options.png", "breakdown.png", "versus_rtt.png"):
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"


def test_plot_redraws_saved_rows_without_simulating(root, tmp_path, monkeypatch):
    runner = CliRunner()
    rows = tmp_path / "rows.json"
    result = runner.invoke(main, ["compare", str(root / "configs/lab.toml"), "colocate",
                                  "--json", "--replications", "2"])  # fmt: skip
    rows.write_text(result.output)
    import durosim.model.world

    def no_simulation(*args, **kwargs):
        raise AssertionError("plot must not simulate")

    monkeypatch.setattr(durosim.model.world, "simulate", no_simulation)
    for kind, name in (("options", "a.png"), ("breakdown", "b.svg")):
        out = tmp_path / name
        done = runner.invoke(main, ["plot", str(rows), "--kind", kind, "--out", str(out)])
        assert done.exit_code == 0, done.output
        assert out.stat().st_size > 1000
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    bad = runner.invoke(main, ["plot", str(junk), "--out", str(tmp_path / "c.png")])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1


def test_ctrl_c_in_compare_keeps_the_finished_rows_and_exits_130():
    import json
    import os
    import pty
    import signal
    import subprocess
    import sys
    import time

    # stderr on a pseudo-terminal shows the progress bar: interrupt once a row has finished
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", "from durosim.cli import main; main()", "compare", "lab",
         "colocate", "no_pool_ping", "pipelining", "long_poll", "server_side_turns",
         "--set", "workload.count=1500", "--replications", "3", "--json"],
        stdout=subprocess.PIPE, stderr=follower, text=True,
    )  # fmt: skip
    os.close(follower)
    seen, deadline = "", time.monotonic() + 120
    while "1/6" not in seen and time.monotonic() < deadline:
        seen += os.read(leader, 4096).decode(errors="replace")
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    err = ""
    try:
        while chunk := os.read(leader, 4096):
            err += chunk.decode(errors="replace")
    except OSError:  # the terminal closes with the process
        pass
    os.close(leader)
    assert "1/6" in seen
    assert process.returncode == 130, err
    assert "durosim: error: interrupted: " in err
    done = json.loads(out)
    assert done["interrupted"] is True and done["rows"][0]["option"] == "baseline"
    assert 1 <= len(done["rows"]) < 6


def test_the_versus_rtt_figure_names_its_scenario():
    from durosim.plots.whatif import versus_rtt

    points = [
        {"option": option, "rtt_ms": rtt, "latency_ms": {"p50": 10.0 * rtt},
         "throughput_per_s": 1.0 / rtt}
        for option in ("baseline", "long_poll") for rtt in (1, 10)
    ]  # fmt: skip
    figure = versus_rtt(points, "checkout-eu")
    assert figure.get_suptitle().startswith("checkout-eu: ")


def _half_widths(container) -> list[float]:
    """The half-widths an ErrorbarContainer draws, from its vertical segments."""
    segments = container.lines[2][0].get_segments()
    return [(top[1] - bottom[1]) / 2 for bottom, top in segments]


def test_latency_bars_carry_the_rows_confidence_intervals(lab):
    from matplotlib.container import ErrorbarContainer

    from durosim.plots.whatif import breakdown_bars, options_side_by_side

    result = compare(lab, ["colocate", "no_pool_ping"], 3)
    rows = result["rows"]
    p50_cis = [r["latency_ci_ms"]["p50"] for r in rows]
    assert all(ci > 0 for ci in p50_cis) and len(set(p50_cis)) == 3
    latency = options_side_by_side(result).axes[0]
    (bars,) = [c for c in latency.containers if getattr(c, "errorbar", None)]
    assert _half_widths(bars.errorbar) == pytest.approx(p50_cis)
    stacked = breakdown_bars(result).axes[0]
    (errors,) = [c for c in stacked.containers if isinstance(c, ErrorbarContainer)]
    assert _half_widths(errors) == pytest.approx([r["latency_ci_ms"]["mean"] for r in rows])
    centres = [(b[1] + t[1]) / 2 for b, t in errors.lines[2][0].get_segments()]
    assert centres == pytest.approx([r["latency_ms"]["mean"] for r in rows], abs=0.1)


def test_a_row_without_a_confidence_interval_draws_no_error_bar(lab):
    from durosim.plots.whatif import options_side_by_side

    result = compare(lab, ["colocate"], 1)
    assert result["rows"][0]["latency_ci_ms"]["p50"] is None  # one replication: no interval
    latency = options_side_by_side(result).axes[0]
    (bars,) = [c for c in latency.containers if getattr(c, "errorbar", None)]
    segments = bars.errorbar.lines[2][0].get_segments()
    assert len(segments) == 2 and all(len(s) == 0 for s in segments)  # none drawn, not 0 wide


@pytest.fixture
def small_report(monkeypatch):
    """The report cut to one remedy besides the stored procedures and a sweep of 2 x 2
    points, so that it runs in a second: 3 + 4 variants at one RTT."""
    from durosim.experiments import seed_report

    remedies = [r for r in seed_report.REMEDIES if r[0] in ("pipelining", "no_stored_procedures")]
    monkeypatch.setattr(seed_report, "REMEDIES", tuple(remedies))
    monkeypatch.setattr(seed_report, "SWEEP_RTTS_MS", (1, 50))
    monkeypatch.setattr(seed_report, "SWEEP_SPECS", ("baseline", "pipelining"))
    return seed_report


def test_report_calls_its_progress_once_per_variant(small_report, root, tmp_path):
    lab = load(root / "configs/lab.toml", ["workload.count=4", "workload.warmup=1"])
    calls = []
    written = small_report.build(lab, None, (150.0,), 2, tmp_path, lambda: calls.append(1))
    assert len(calls) == small_report.steps(lab, None, (150.0,), 2) == 3 + 4
    assert written.finished == 7 and not written.interrupted
    assert [f.name for f in written.figures] == ["options.png", "breakdown.png", "versus_rtt.png"]
    assert "**Interrupted**" not in written.page.read_text()


@pytest.mark.parametrize("where", ["compare", "sweep"])
def test_ctrl_c_in_report_keeps_what_finished_and_exits_130(small_report, root, tmp_path,
                                                            monkeypatch, where):  # fmt: skip
    import durosim.experiments.compare as comparing

    real = comparing.run_replications
    seen = []

    def interrupted(scenario, replications=None):
        seen.append(scenario.name)
        if len(seen) == 2:  # the first remedy (compare) or the sweep's first point
            raise KeyboardInterrupt
        return real(scenario, replications)

    monkeypatch.setattr(comparing if where == "compare" else small_report,
                        "run_replications", interrupted)  # fmt: skip
    if where == "sweep":
        seen.append("compare done")
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main, ["report", "lab", "--out", str(out), "--rtt", "150", "--replications", "2"]
    )
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("durosim: error: interrupted: ")
    assert "Traceback" not in result.output
    page = (out / "report.md").read_text()
    assert "**Interrupted**" in page
    assert not (out / "versus_rtt.png").exists()
    if where == "sweep":  # the remedies at 150 ms finished: their table and figures stay
        assert "simulated at 150 ms" in page and (out / "options.png").exists()
        assert ": 3 of 7 variants simulated" in result.stderr
    else:
        assert "simulated at 150 ms" not in page and not (out / "options.png").exists()


def test_report_refuses_an_rtt_at_which_nothing_completes(tmp_path):
    result = CliRunner().invoke(main, ["report", "lab", "--out", str(tmp_path / "r"),
                                       "--rtt", "100000"])  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("durosim: error: --rtt 100000: expected 0.001 to 1")
    assert "wait of 60 s (workload.wait_timeout_s)" in lines[0]
    assert not (tmp_path / "r").exists(), "nothing written"


def test_report_refuses_work_beyond_the_limit_unless_large(root, tmp_path):
    big = tmp_path / "big.toml"
    text = (root / "configs/lab.toml").read_text()
    big.write_text(text.replace("count = 20", "count = 2000000"))
    result = CliRunner().invoke(main, ["report", str(big), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "report on lab (102 variants): about" in line and "--large" in line
