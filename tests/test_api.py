"""durosim from Python: the same results as the command line, and the example capacity plan."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import durosim
from durosim.cli import main

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "traces/lab/rtt50_f5_2x2_seq.jsonl"


def cli_json(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)


def test_run_is_what_the_command_prints():
    s = durosim.load("lab", {"network.rtt_ms": 40, "workload.count": 10})
    assert durosim.run(s, replications=2).to_dict() == cli_json(
        "run", "lab", "--set", "network.rtt_ms=40", "--set", "workload.count=10",
        "--replications", 2, "--json",
    )  # fmt: skip


def test_compare_capacity_and_validate_are_what_the_commands_print():
    s = durosim.load("lab", {"workload.count": 8})
    assert durosim.compare(s, ["colocate"], replications=2).to_dict() == cli_json(
        "compare", "lab", "colocate", "--set", "workload.count=8", "--replications", 2, "--json"
    )
    fast = durosim.load("lab", {"network.rtt_ms": 5})
    found = durosim.capacity(fast, "p95<1s", replications=1, duration_s=20.0, warmup_s=5.0)
    assert found.to_dict() == cli_json(
        "capacity", "lab", "--slo", "p95<1s", "--set", "network.rtt_ms=5", "--replications", 1,
        "--duration-s", 20, "--warmup-s", 5, "--json",
    )  # fmt: skip
    assert len(found.rows()) == len(found.to_dict()["points"])
    checked = durosim.validate(TRACE, replications=2).to_dict()
    assert checked == cli_json("validate", TRACE, "--replications", 2, "--json")["traces"][0]


def test_sweep_returns_its_rows_and_writes_them_when_asked(tmp_path):
    out = tmp_path / "rows.csv"
    rows = durosim.sweep(
        "lab", {"network.rtt_ms": [10, 40]}, overrides={"workload.count": 5}, replications=1,
        out=out,
    ).rows()  # fmt: skip
    assert [r["network.rtt_ms"] for r in rows] == ["10", "40"]
    assert float(rows[1]["latency_mean_ms"]) > float(rows[0]["latency_mean_ms"])
    assert out.read_text().count("\n") == 3


def test_overrides_are_checked_like_set():
    with pytest.raises(durosim.sim.errors.InputError, match="network.rtt_ms"):
        durosim.load("lab", {"network.rtt_ms": -1})


def test_to_frame_names_pandas_when_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    result = durosim.run(durosim.load("lab", {"workload.count": 3}), replications=1)
    assert result.rows()[0]["latency_ms.p50"] == result.to_dict()["latency_ms"]["p50"]
    with pytest.raises(ImportError, match="pip install pandas"):
        result.to_frame()


def test_importing_durosim_leaves_matplotlibs_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); import durosim, durosim.plots.capacity, "
        "durosim.plots.timeline, durosim.cli; print(matplotlib.get_backend())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"


def test_the_example_capacity_plan_runs_end_to_end(tmp_path):
    namespace = runpy.run_path(str(ROOT / "docs/examples/capacity_plan.py"))
    results = namespace["main"](tmp_path)
    assert set(results["workflows"]) == {"order", "lookup"}
    one, two = results["capacity_per_s"]["1 node(s)"], results["capacity_per_s"]["2 node(s)"]
    assert one and two > one, "a second node carries more"
    assert results["what_ifs"]["no_pool_ping"] < results["what_ifs"]["baseline"]
    assert (tmp_path / "capacity.png").stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text()) == results


def test_run_reports_each_orchestration_as_it_ends_without_changing_the_result():
    import durosim

    s = durosim.load("lab", {"workload.count": 4, "replications": 2})
    ended = []
    with_progress = durosim.run(s, on_done=lambda: ended.append(1)).to_dict()
    assert len(ended) == 2 * (4 + s.workload.warmup)
    assert with_progress == durosim.run(s).to_dict()
