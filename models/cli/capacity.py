"""`durosim capacity`: the highest sustainable arrival rate within a latency objective."""

from __future__ import annotations

import itertools
import sys

import click

from durosim import api
from durosim.cli.common import echo_json, load_scenario
from durosim.cli.params import Finite, PositiveFinite, executor_options, usable_jobs
from durosim.cli.paths import figure_path, save_figure
from durosim.experiments import sweep as sweeps
from durosim.experiments.capacity import check_objective, parse_slo
from durosim.sim.config import ConfigError, parse_override, toml_value
from durosim.sim.errors import InputError, Interrupted


def _vary(text: str) -> tuple[str, list]:
    key, _, values = text.partition("=")
    parts = [v.strip() for v in values.split(",")]
    if not key.strip() or not values or not all(parts):
        raise ConfigError(
            f"--vary {text!r}: expected KEY=V1,V2,... with no empty value, e.g. host.nodes=1,2,4"
        )
    return key.strip(), [parse_override(f"{key}={v}")[1] for v in parts]


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option(
    "--slo",
    required=True,
    help='Latency objective, e.g. "p95<2s", "p99<500ms", or for one workflow "order:p95<10s".',
)
@click.option(
    "--vary",
    "varies",
    multiple=True,
    metavar="KEY=V1,V2,...",
    help="Find the capacity for each value (twice: a grid, drawn as a heat map).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change the scenario first (repeatable).",
)
@click.option("--replications", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--duration-s",
    type=Finite(1.0),
    default=60.0,
    show_default=True,
    help="Seconds of arrivals per tried rate.",
)
@click.option("--warmup-s", type=Finite(0.0), default=10.0, show_default=True)
@click.option(
    "--min-rate",
    type=PositiveFinite(),
    metavar="R",
    help="The first rate tried, per second, and the lowest [default: a quarter of a rough "
    "bound from the slots; the search may then go down to about 10 arrivals after the warm-up].",
)
@click.option(
    "--max-rate",
    type=PositiveFinite(),
    default=5000.0,
    show_default=True,
    metavar="R",
    help="The highest rate tried, per second.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Throughput-latency curve (.png, .svg or .pdf); with --vary, one per value.",
)
@click.option(
    "--heatmap",
    type=click.Path(dir_okay=False),
    help="With two --vary: the highest sustained rate over the grid.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--large",
    is_flag=True,
    help="Try rates whose work is far beyond the ordinary (without it the search stops there).",
)
@executor_options("a rate's replications")
def capacity(scenario, slo, varies, overrides, replications, duration_s, warmup_s, min_rate,
             max_rate, plot, heatmap, as_json, large, jobs, executor, scheduler):  # fmt: skip
    """The highest arrival rate (Poisson, open loop) SCENARIO sustains within the SLO, the
    knee of its throughput-latency curve, and which resource saturates first. Exits 1 when no
    rate tried meets the SLO."""
    figure_path(plot)
    figure_path(heatmap)
    if min_rate is not None and min_rate > max_rate:
        raise InputError(f"--min-rate {min_rate:g} is above --max-rate {max_rate:g}")
    if duration_s <= warmup_s:
        raise InputError("--duration-s must be longer than --warmup-s")
    if len(varies) > 2:
        raise InputError("--vary: at most two parameters (a heat map)")
    if heatmap and len(varies) != 2:
        raise InputError("--heatmap needs two --vary parameters")
    objective = parse_slo(slo)
    axes = [_vary(v) for v in varies]
    base_overrides = tuple(overrides)
    # a bad scenario fails before any work
    check_objective(objective, load_scenario(scenario, base_overrides, None, None))
    combos = list(itertools.product(*(values for _, values in axes))) or [()]
    jobs = usable_jobs(executor, jobs, replications, "replications")
    with sweeps.executor(executor, jobs, scheduler) as runner:
        results = _search(
            scenario, slo, axes, combos, base_overrides, replications, duration_s, warmup_s,
            min_rate, max_rate, large, runner, plot,
        )  # fmt: skip
    if results and results[-1].get("interrupted"):
        heatmap = None  # a partial search: no figures
    s = load_scenario(scenario, base_overrides, None, None)
    if heatmap:
        from durosim.plots.capacity import heatmap as draw

        rows = [{**r["values"], "max_rate_per_s": r["max_rate_per_s"]} for r in results]
        title = f"{s.name}: highest rate within {objective.text}"
        save_figure(draw(rows, axes[0][0], axes[1][0], title), heatmap)
    if as_json:
        echo_json(results if varies else results[0])
    else:
        _print(results, objective)
    if results and results[-1].get("interrupted"):
        raise Interrupted(
            f"interrupted: {len(results[-1]['points'])} rates tried in the last search, "
            "what they showed is above"
        )
    stopped = [r["stopped"] for r in results if r.get("stopped")]
    if stopped:
        raise InputError(f"the search stopped early: {stopped[0]}")
    if any(r["max_rate_per_s"] is None for r in results):
        sys.exit(1)


def _search(scenario, slo, axes, combos, base_overrides, replications, duration_s, warmup_s,
            min_rate, max_rate, large, runner, plot) -> list[dict]:  # fmt: skip
    """One capacity search per combination of the --vary values, each figure drawn as its
    search ends; stops after an interrupted one."""
    results = []
    for combo in combos:
        extra = tuple(f"{key}={toml_value(v)}" for (key, _), v in zip(axes, combo))
        s = load_scenario(scenario, base_overrides + extra, None, None)
        result = api.capacity(
            s, slo, replications=replications, duration_s=duration_s, warmup_s=warmup_s,
            min_rate=min_rate, max_rate=max_rate,
            on_point=_show_point if sys.stderr.isatty() else None,
            values={key: v for (key, _), v in zip(axes, combo)}, large=large, runner=runner,
        ).to_dict()  # fmt: skip
        if result.get("stopped") and not result["points"]:
            raise InputError(f"{s.name}: {result['stopped']}")
        results.append(result)
        if result.get("interrupted"):
            break
        if plot:
            from durosim.plots.capacity import throughput_latency

            name = plot if len(combos) == 1 else _suffixed(plot, combo)
            save_figure(throughput_latency(result, s.name), name)
    return results


def _print(results: list[dict], objective) -> None:
    for r in results:
        label = ", ".join(f"{k}={v}" for k, v in r["values"].items())
        if label:
            click.echo(f"== {label}")
        if not r["points"]:
            click.echo("interrupted before any rate finished")
            continue
        if r["max_rate_per_s"] is None:
            lowest = r["points"][0]
            latency = _latency(lowest, objective)
            seen = (
                f"p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms"
                if latency.get("p50") is not None
                else "no orchestration completed"
            )
            click.echo(
                f"no rate meets {r['slo']}: at the lowest tried, {lowest['rate_per_s']:.4g}/s, "
                f"{seen}, {lowest['failed']} not completed (try --min-rate lower)"
            )
            continue
        at = r["at_max"]
        latency = _latency(at, objective)
        of = f" of {objective.workflow}" if objective.workflow else ""
        least = "at least " if r.get("stopped") and r["beyond"] is None else ""
        click.echo(
            f"highest rate within {r['slo']}: {least}{r['max_rate_per_s']:.4g}/s "
            f"(p50{of} {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms)"
        )
        if r["knee"]:
            click.echo(
                f"knee of the throughput-latency curve: {r['knee']['throughput_per_s']:.4g}/s"
            )
        click.echo(
            f"saturates first: {r['saturates_first']} "
            + "("
            + ", ".join(f"{k} {v * 100:.0f}%" for k, v in at["utilisation"].items())
            + " busy at the highest rate)"
        )
        beyond = r["beyond"]
        if beyond is not None:
            click.echo(
                f"at {beyond['rate_per_s']:.4g}/s, the lowest rate that misses it, the work waits "
                f"for {beyond['waits_for']}"
            )


def _latency(point: dict, objective) -> dict:
    """The latencies the objective is about at a tried rate: its workflow's, or all."""
    if objective.workflow:
        row = point.get("workflows", {}).get(objective.workflow)
        if row is not None:
            return row["latency_ms"]
    return point["latency_ms"]


def _show_point(point: dict) -> None:
    """On a terminal, each tried rate as it finishes."""
    p95 = point["latency_ms"]["p95"]
    seen = f"p95 {p95:.0f} ms" if p95 is not None else "nothing completed"
    verdict = "meets" if point["met"] else "misses"
    click.echo(f"  tried {point['rate_per_s']:.4g}/s: {seen}, {verdict} the SLO", err=True)


def _suffixed(path: str, combo: tuple) -> str:
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}-{'-'.join(str(v) for v in combo)}{dot}{suffix}"
