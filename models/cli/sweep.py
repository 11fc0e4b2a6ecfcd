"""`durosim sweep` and `durosim bench`: many scenarios on every core, and how fast that is."""

from __future__ import annotations

import csv
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import click

from durosim.cli.common import echo_json, load_scenario
from durosim.cli.params import executor_options, usable_jobs
from durosim.cli.paths import figure_path, output_path, save_figure
from durosim.experiments import sweep as sweeps
from durosim.experiments.size import check_points, check_size
from durosim.model.scenario import read_table
from durosim.sim.errors import Interrupted


def _workers(executor: str, workers: int) -> str:
    if executor == "dask":
        return f"Dask, {workers} worker threads"
    return "in this process" if workers == 1 else f"{workers} processes"


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option(
    "--grid",
    "grids",
    multiple=True,
    required=True,
    metavar="KEY=V1,V2,...",
    help="Values of one scenario key, read as TOML like --set (repeatable: the sweep runs "
    "every combination).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change one scenario value at every point (repeatable).",
)
@click.option(
    "--replications",
    type=click.IntRange(min=1),
    help="Replications per point (default: the scenario's).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="sweep.csv",
    show_default=True,
    help="CSV of one row per point; the points it already holds are skipped (resume).",
)
@executor_options("points")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as one JSON object.")
@click.option(
    "--large",
    is_flag=True,
    help="Run even when the estimated work is beyond what durosim runs without asking.",
)
def sweep(scenario, grids, overrides, replications, jobs, out, executor, scheduler, as_json,
          large):  # fmt: skip
    """Simulate SCENARIO at every combination of the --grid values and write one CSV row per
    point: latency mean and percentiles, throughput and total time, each with its 95% CI
    across replications, DB calls, pool and server use, and the point's wall time."""
    grid = sweeps.parse_grid(grids)
    points = 1
    for _, values in grid:
        points *= len(values)
    check_points(points, large, f"--grid ({' x '.join(str(len(v)) for _, v in grid)})")
    jobs = usable_jobs(executor, jobs, points, "points")
    runner = sweeps.executor(executor, jobs, scheduler)
    # the file and --set, checked alone first
    check_size(load_scenario(scenario, overrides, None, replications), large, points,
               f"{scenario} at {points} points")  # fmt: skip
    output_path(out, [scenario] if Path(scenario).is_file() else [])
    table = read_table(scenario)
    extra = list(overrides) + ([f"replications={replications}"] if replications else [])

    with ExitStack() as stack:
        bar: list = []

        def start(todo: int, resumed: int) -> None:
            if resumed:
                click.echo(
                    f"{resumed} of {todo + resumed} points already in {out}; {todo} to run",
                    err=True,
                )
            if not todo:
                return
            bar.append(
                stack.enter_context(
                    click.progressbar(
                        length=todo,
                        label=f"sweep ({_workers(executor, runner.workers)})",
                        show_eta=True,
                        show_pos=True,
                        file=sys.stderr,
                    )
                )
            )

        written = []

        def row_done(row: dict) -> None:
            written.append(row)
            if bar:
                bar[0].update(1)

        try:
            with runner:
                result = sweeps.run_sweep(
                    scenario, table, extra, grid, out, runner, on_start=start, on_row=row_done
                )
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: {len(written)} more points written to {out}; the same command "
                "runs the rest"
            ) from None
    if result.computed:
        per_point = result.wall_s / result.computed
        computing = sum(result.point_wall_s) / result.computed
        click.echo(
            f"{result.computed} points in {result.wall_s:.2f} s: {per_point * 1000:.1f} ms a "
            f"point ({computing * 1000:.1f} ms simulating each; "
            f"{_workers(executor, runner.workers)})",
            err=True,
        )
    if as_json:
        with open(out, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        summary = {"out": str(out), "points": result.points, "computed": result.computed,
                   "resumed": result.resumed, "rows": rows}  # fmt: skip
        echo_json(summary)
        return
    click.echo(
        f"wrote {out}: {result.points} points ({result.computed} run, "
        f"{result.resumed} already there)"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quick", is_flag=True, help="Everything smaller: a smoke test, not a result.")
@click.option(
    "--cost",
    type=click.Path(dir_okay=False),
    help="Instead, measure how one replication's CPU time grows with nodes, slots, rate and "
    "simulated time around the production scenario, and draw it here (.png, .svg or .pdf).",
)
def bench(as_json, quick, cost):
    """Measure on this machine: raw SimPy and the model in kernel events per second, one
    replication of the Azure 152 ms stress scenario, the production scenario's cost in raw
    SimPy events an orchestration, scaling with 10x the orchestrations, and a 200-point sweep on
    1 and 2 processes, each against its target."""
    from durosim.experiments.bench import cost_curves, render, run_bench

    say = lambda text: click.echo(text, err=True)  # noqa: E731
    if cost:
        figure_path(cost)
        result = cost_curves(quick, say)
        from durosim.plots.bench import cost_curves as draw

        save_figure(draw(result, f"{os.cpu_count()} CPUs"), cost)
        if as_json:
            echo_json(result)
        else:
            for axis, rows in result.items():
                if axis != "base":
                    cells = ", ".join(f"{r['value']}: {r['cpu_s']:.2f} s" for r in rows)
                    click.echo(f"{axis:<12} {cells}")
            click.echo(f"wrote {cost}")
        return
    result = run_bench(quick, progress=say)
    if as_json:
        echo_json(result)
    else:
        click.echo(render(result))
