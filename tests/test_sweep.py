"""`durosim sweep`: the grid, the rows, the executors agreeing, and resuming."""

import csv
import sys

import pytest
from click.testing import CliRunner

from durosim.cli import main as durosim
from durosim.experiments import sweep as sweeps
from durosim.model.scenario import load
from durosim.model.world import simulate
from durosim.sim.stats import mean_ci
from tests.conftest import ROOT

GRID = ["--grid", "network.rtt_ms=10,50", "--grid", "runtime_options.worker_concurrency=2,4"]
SMALL = ["--set", "workload.count=3", "--replications", "2"]


@pytest.fixture(scope="module")
def sweep_cli():
    group = durosim

    def invoke(out, *args):
        runner = CliRunner()
        scenario = str(ROOT / "configs/lab.toml")
        arguments = ["sweep", scenario, *GRID, *SMALL, "--out", str(out), *map(str, args)]
        return runner.invoke(group, arguments, catch_exceptions=False)

    return invoke


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _values(rows):
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


@pytest.fixture(scope="module")
def baseline(sweep_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "base.csv"
    result = sweep_cli(out)
    assert result.exit_code == 0, result.output
    return out, result


def test_grid_values_are_read_as_toml_and_expand_to_every_combination():
    grid = sweeps.parse_grid(
        [
            "client.max_poll_delay_ms=1, 2.5",
            'network.rtt={kind = "uniform", low_ms = 1, high_ms = 3},{kind = "constant"}',
            'workload.mode=closed,"stress"',
        ]
    )
    assert [key for key, _ in grid] == ["client.max_poll_delay_ms", "network.rtt", "workload.mode"]
    assert [v.value for v in grid[0][1]] == [1, 2.5]
    assert grid[1][1][0].value == {"kind": "uniform", "low_ms": 1, "high_ms": 3}
    assert [v.value for v in grid[2][1]] == ["closed", "stress"]
    points = sweeps.expand(grid)
    assert len(points) == 2 * 2 * 2
    uniform = '{kind = "uniform", low_ms = 1, high_ms = 3}'
    assert [v.cell for v in points[1]] == ["1", uniform, "stress"]
    assert sweeps.point_overrides(grid, points[-1])[-1] == 'workload.mode="stress"'


@pytest.mark.parametrize(
    "texts, message",
    [
        (["network.rtt_ms"], "expected KEY=V1,V2"),
        (["network.rtt_ms=1,2", "network.rtt=3"], "set the same value"),
        (["network.rtt_ms=1,,2"], "an empty value"),
        (["network.rtt_ms=1,1.0"], "appears twice"),
        (["network.rtt_ms=1", "network.rtt_ms=2"], "already a grid key"),
        (["network.rtt={kind="], "is not a TOML value"),
        ([], "no --grid"),
    ],
)
def test_a_bad_grid_names_what_is_wrong(texts, message):
    with pytest.raises(sweeps.SweepError, match=message):
        sweeps.parse_grid(texts)


def test_a_small_sweep_writes_one_row_per_point_in_point_order(baseline, root):
    out, result = baseline
    rows = _rows(out)
    assert [(r["network.rtt_ms"], r["runtime_options.worker_concurrency"]) for r in rows] == [
        ("10", "2"),
        ("10", "4"),
        ("50", "2"),
        ("50", "4"),
    ]
    assert list(rows[0]) == ["network.rtt_ms", "runtime_options.worker_concurrency"] + list(
        sweeps.METRICS
    )
    for row in rows:
        assert row["replications"] == "2"
        assert int(row["completed"]) == 2 * (3 + 3)  # count and warm-up, both replications
        assert row["failed"] == "0"
        assert float(row["latency_p50_ms"]) <= float(row["latency_p99_ms"])
        assert float(row["latency_mean_ci_ms"]) >= 0
        assert row["total_s"] == ""  # sequential mode has no total time
        assert float(row["calls_per_orchestration"]) > 0
        assert 0 <= float(row["server_utilisation"]) <= 1
    assert float(rows[2]["latency_mean_ms"]) > float(rows[0]["latency_mean_ms"])
    assert "4 points (4 run, 0 already there)" in result.stdout
    assert "ms a point" in result.stderr

    # A row is the mean, and CI, of the same point's replications run directly.
    scenario = load(
        root / "configs/lab.toml",
        ["workload.count=3", "network.rtt_ms=50", "runtime_options.worker_concurrency=4"],
    )
    runs = [simulate(scenario, rep) for rep in range(2)]
    means = [sum(r.latencies_s) / len(r.latencies_s) * 1000 for r in runs]
    mean, half = mean_ci(means)
    assert float(rows[3]["latency_mean_ms"]) == pytest.approx(mean, abs=1e-3)
    assert float(rows[3]["latency_mean_ci_ms"]) == pytest.approx(half, abs=1e-3)


def test_two_processes_write_the_same_values(baseline, sweep_cli, tmp_path):
    out = tmp_path / "two.csv"
    result = sweep_cli(out, "--jobs", 2)
    assert result.exit_code == 0, result.output
    assert _values(_rows(out)) == _values(_rows(baseline[0]))


def test_resume_runs_only_the_missing_points(baseline, sweep_cli, tmp_path):
    out = tmp_path / "resume.csv"
    full = baseline[0].read_text().splitlines(keepends=True)
    # two rows lost, and a third cut off while it was written
    out.write_text("".join(full[:3]) + full[3][:20])
    result = sweep_cli(out)
    assert result.exit_code == 0, result.output
    assert "4 points (2 run, 2 already there)" in result.stdout
    rows, before = _rows(out), _rows(baseline[0])
    assert _values(rows) == _values(before)
    assert [r["wall_s"] for r in rows[:2]] == [r["wall_s"] for r in before[:2]]

    again = sweep_cli(out, "--jobs", 2)
    assert "4 points (0 run, 4 already there)" in again.stdout
    assert _rows(out) == rows


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--grid", "network.rt=1,2"], "unknown key 'network.rt'"),
        (["--grid", "workload.fanout=2,0"], "grid point network.rtt_ms=10, "),
        (["--grid", "workload.fanout=1,1"], "'1' appears twice"),
        (["--set", "workload.fanout=0"], "workload.fanout: must be >= 1"),
        (["--executor", "dask"], "needs --scheduler"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "is for --executor dask"),
    ],
)
def test_bad_input_fails_before_anything_runs(sweep_cli, tmp_path, extra, message):
    out = tmp_path / "bad.csv"
    result = sweep_cli(out, *extra)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_another_sweeps_csv_is_not_mixed_in(baseline, sweep_cli, tmp_path):
    out = tmp_path / "other.csv"
    out.write_text(baseline[0].read_text())
    result = sweep_cli(out, "--grid", "workload.fanout=1,2")
    assert result.exit_code == 2
    assert "holds a sweep over network.rtt_ms, runtime_options.worker_concurrency, not" in (
        result.stderr
    )
    result = sweep_cli(out, "--set", "network.rtt_ms=3")  # the grid overrides it: same digest
    assert result.exit_code == 0
    result = sweep_cli(out, "--set", "pool.size=3")
    assert result.exit_code == 2
    assert "holds rows for another scenario" in result.stderr


def _junk_point(row: list[str]) -> list[str]:
    return ["999"] + row[1:]


def _junk_metric(row: list[str]) -> list[str]:
    return row[:2] + ["abc"] + row[3:]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows + [rows[1]], "a second row for the same grid point"),
        (lambda rows: rows[:1] + [_junk_point(rows[1])] + rows[2:],
         "network.rtt_ms=999, runtime_options.worker_concurrency=2, which is not a point"),
        (lambda rows: rows[:1] + [_junk_metric(rows[1])] + rows[2:],
         "latency_mean_ms = 'abc' is not a number"),
        (lambda rows: rows[:1] + [rows[1][:-3]] + rows[2:], "cells where this sweep writes"),
    ],
)  # fmt: skip
def test_a_resumed_sweep_keeps_no_row_it_cannot_vouch_for(baseline, sweep_cli, tmp_path, edit,
                                                          message):  # fmt: skip
    """Rows with this sweep's config digest that it would not have written (an edited file) are
    an error naming the line, and the file is left as it was."""
    with open(baseline[0], newline="") as handle:
        rows = list(csv.reader(handle))
    out = tmp_path / "edited.csv"
    with open(out, "w", newline="") as handle:
        csv.writer(handle).writerows(edit(rows))
    before = out.read_bytes()
    result = sweep_cli(out)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and f"{out}:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == before


def test_a_missing_dask_says_how_to_install_it(sweep_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = sweep_cli(tmp_path / "x.csv", "--executor", "dask", "--scheduler", "tcp://h:1")
    assert result.exit_code == 2
    assert "pip install 'durosim[sweep-dask]'" in result.stderr


def test_a_dask_cluster_writes_the_same_values(baseline, sweep_cli, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        out = tmp_path / "dask.csv"
        result = sweep_cli(out, "--executor", "dask", "--scheduler", cluster.scheduler_address)
    assert result.exit_code == 0, result.output
    assert _values(_rows(out)) == _values(_rows(baseline[0]))


def test_plot_draws_latency_and_database_cpu_against_the_swept_key(tmp_path):
    rows = tmp_path / "nodes.json"
    args = ["sweep", "lab", "--grid", "host.nodes=1,3", "--set", "workload.count=4",
            "--set", "database.cores=1", "--replications", "2",
            "--out", str(tmp_path / "nodes.csv"), "--json"]  # fmt: skip
    done = CliRunner().invoke(durosim, args)
    assert done.exit_code == 0, done.output
    rows.write_text(done.stdout)
    figure = tmp_path / "nodes.png"
    drawn = CliRunner().invoke(durosim, ["plot", str(rows), "--out", str(figure)])
    assert drawn.exit_code == 0 and figure.stat().st_size > 10_000, drawn.output
    import json

    from durosim.plots.capacity import sweep_lines

    axes = sweep_lines(json.loads(rows.read_text()), ["host.nodes"]).axes
    assert axes[0].get_xlabel() == "host.nodes" and "CPU" in axes[1].get_ylabel()
    wrong = CliRunner().invoke(durosim, ["plot", str(rows), "--kind", "capacity", "--out",
                                         str(tmp_path / "x.png")])  # fmt: skip
    assert wrong.exit_code == 2 and "holds sweep rows" in wrong.output


def test_plot_of_a_two_key_sweep_says_it_draws_one_key(tmp_path):
    args = ["sweep", "lab", "--grid", "host.nodes=1,2", "--grid", "pool.size=5,10",
            "--set", "workload.count=3", "--replications", "2",
            "--out", str(tmp_path / "g.csv"), "--json"]  # fmt: skip
    done = CliRunner().invoke(durosim, args)
    assert done.exit_code == 0, done.output
    rows = tmp_path / "g.json"
    rows.write_text(done.stdout)
    drawn = CliRunner().invoke(durosim, ["plot", str(rows), "--out", str(tmp_path / "g.png")])
    assert drawn.exit_code == 2 and "a sweep of one key; this one varies 2" in drawn.output
    assert not (tmp_path / "g.png").exists()
