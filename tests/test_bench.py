"""`durosim bench --quick`: a smoke test of the benchmark; its numbers belong in a report, not in
a timed test."""

import json

from click.testing import CliRunner

from durosim.cli import main as durosim


def test_quick_bench_reports_every_measurement_with_its_target():
    result = CliRunner().invoke(durosim, ["bench", "--quick", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("model_events_per_s", "simpy_events_per_s", "azure_152ms_stress_s"):
        assert out[key] > 0
    assert out["model_to_simpy_ratio"] > 0
    assert out["scaling"]["small_peak_bytes"] > 0 and out["scaling"]["large_peak_bytes"] > 0
    assert out["sweep"]["speedup"] > 0
    assert set(out["targets"]) == {
        "model_to_simpy_ratio",
        "azure_152ms_stress_s",
        "scaling_time_ratio",
        "scaling_memory_bytes_per_orchestration",
        "sweep_speedup",
        "production_simpy_events_per_orchestration",
    }
    assert out["production"]["orchestrations"] > 0
    assert all(isinstance(t["met"], bool) for t in out["targets"].values())


def test_bench_prints_a_table():
    result = CliRunner().invoke(durosim, ["bench", "--quick"])
    assert result.exit_code == 0, result.output
    for text in ("raw SimPy", "model / raw SimPy", "azure-152ms stress", "speed-up", "target"):
        assert text in result.stdout


def test_bench_cost_measures_and_draws_the_growth(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from durosim.cli import main
    from durosim.experiments import bench

    monkeypatch.setattr(bench, "COST_AXES", {"nodes": ("host.nodes", (1, 2))})
    out = tmp_path / "cost.svg"
    result = CliRunner().invoke(main, ["bench", "--cost", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["nodes"]
    assert [r["value"] for r in rows] == [1, 2]
    # two nodes carry twice the arrivals: more orchestrations and calls, more CPU
    assert rows[1]["orchestrations"] > rows[0]["orchestrations"] > 0
    assert rows[1]["calls"] > rows[0]["calls"] and all(r["cpu_s"] > 0 for r in rows)
    assert "runtime nodes" in out.read_text()


def test_a_finished_orchestration_is_freed_without_the_garbage_collector():
    """Memory stays flat because nothing is kept per orchestration but its latency: with the
    cyclic garbage collector off, a run of 300 orchestrations leaves only the few in flight at
    its end (a reference cycle through an instance would keep every one until a collection)."""
    import gc

    from durosim.model.queues import Instance
    from durosim.model.scenario import load, shipped
    from durosim.model.world import simulate

    scenario = load(
        shipped()["lab"],
        ['workload.mode="closed"', "workload.in_flight=4", "workload.count=300"],
    )
    gc.collect()
    gc.disable()
    try:
        result = simulate(scenario, 0)
        alive = sum(1 for o in gc.get_objects() if type(o) is Instance)
    finally:
        gc.enable()
    assert result.completed == 300 + scenario.workload.warmup
    assert alive <= 8
