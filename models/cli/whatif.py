"""`durosim options` and `durosim compare`: the what-ifs, side by side."""

from __future__ import annotations

from pathlib import Path

import click

from durosim import api
from durosim.cli.common import echo_json, load_scenario, progress_bar
from durosim.cli.params import Finite
from durosim.cli.paths import figure_path, save_figure
from durosim.experiments import seed_report
from durosim.experiments.size import check_size
from durosim.model.whatif import OPTIONS
from durosim.sim.errors import InputError, Interrupted


def _signed(change: dict, unit: str) -> str:
    if change.get("diff") is None:
        return "-"
    ci = f" ± {change['ci']:.3g}" if change.get("ci") is not None else ""
    return f"{change['diff']:+.4g}{ci} {unit} ({change['pct']:+.1f}%)"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def options(as_json):
    """List the what-ifs `durosim compare` takes (combine them with +)."""
    if as_json:
        rows = [{"name": o.name, "usage": o.usage, "help": o.help} for o in OPTIONS.values()]
        echo_json({"options": rows})
        return
    width = max(len(o.usage) for o in OPTIONS.values())
    for option in OPTIONS.values():
        click.echo(f"{option.usage:<{width}}  {option.help}")


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.argument("whatifs", nargs=-1, required=True)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change the baseline first (repeatable).",
)
@click.option(
    "--replications",
    type=click.IntRange(min=1),
    help="Replications per variant (default: the scenario's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Draw latency and throughput per option (.png, .svg or .pdf).",
)
@click.option(
    "--breakdown",
    type=click.Path(dir_okay=False),
    help="Draw where the time goes per option, stacked (.png, .svg or .pdf).",
)
@click.option(
    "--large",
    is_flag=True,
    help="Run even when the estimated work is beyond what durosim runs without asking.",
)
def compare(scenario, whatifs, overrides, replications, as_json, plot, breakdown, large):
    """Run SCENARIO and each WHATIF (see `durosim options`; combine with +, e.g.
    colocate+long_poll) on common random numbers, and print each one's latency, throughput,
    DB calls and change against the baseline with a 95% confidence interval."""
    figure_path(plot)
    figure_path(breakdown)
    base = load_scenario(scenario, overrides, None, replications)
    check_size(base, large, 1 + len(whatifs), f"{base.name} and {len(whatifs)} what-ifs")
    with progress_bar(1 + len(whatifs), "comparing") as advance:
        result = api.compare(
            base, list(whatifs), replications=replications, on_row=lambda row: advance()
        ).to_dict()
    interrupted = result.get("interrupted", False)
    if interrupted:
        plot = breakdown = None  # partial rows: no figures
    if plot:
        from durosim.plots.whatif import options_side_by_side

        save_figure(options_side_by_side(result), plot)
    if breakdown:
        from durosim.plots.whatif import breakdown_bars

        save_figure(breakdown_bars(result), breakdown)
    if as_json:
        echo_json(result)
    elif result["rows"]:
        _print_compare(result)
    if interrupted:
        raise Interrupted(
            f"interrupted: {len(result['rows'])} of {1 + len(whatifs)} rows finished, shown above"
        )


def _print_compare(result: dict) -> None:
    rows = result["rows"]
    width = max(12, max(len(r["option"]) for r in rows))
    click.echo(
        f"{result['scenario']} at RTT {result['rtt_ms']:g} ms, "
        f"{rows[0]['replications']} replications each (common random numbers)"
    )
    click.echo(
        f"{'option':<{width}}  {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} "
        f"{'orch/s':>8} {'calls':>7}  change of mean latency / of throughput"
    )
    for r in rows:
        lat = r["latency_ms"]
        if lat["p50"] is None:
            click.echo(f"{r['option']:<{width}}  no orchestration completed")
            continue
        calls = sum(r["calls_per_orchestration"].values())
        change = r["change"]
        text = (
            ""
            if not change
            else (
                f"{_signed(change['latency_mean_ms'], 'ms')} / "
                f"{_signed(change['throughput_per_s'], '/s')}"
            )
        )
        click.echo(
            f"{r['option']:<{width}}  {lat['p50']:9.1f} {lat['p95']:9.1f} "
            f"{lat['p99']:9.1f} {r['throughput_per_s']:8.3f} {calls:7.1f}  {text}"
        )
        for name, row in r.get("workflows", {}).items():
            wl = row["latency_ms"]
            click.echo(
                f"{'  ' + name:<{width}}  {wl['p50']:9.1f} {wl['p95']:9.1f} "
                f"{wl['p99']:9.1f} {row['throughput_per_s']:8.3f}"
            )
        if "faults" in r:
            report = r["faults"]
            recovery = report["recovery_s"]
            click.echo(
                f"{'':<{width}}  after the faults: recovery "
                + ("not in every run" if recovery is None else f"{recovery:.1f} s")
                + f", {report['activity_reruns_per_run']:.1f} activities run again a run"
            )


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option(
    "--stress",
    type=click.Path(dir_okay=False),
    help="A stress-test scenario for the claims about the stress test's columns.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for report.md and its figures.",
)
@click.option(
    "--rtt",
    "rtts",
    multiple=True,
    type=Finite(seed_report.MIN_RTT_MS),
    help="RTTs to simulate each remedy at (default 150, 70 and 1 ms; at most what lets the "
    "scenario's orchestrations complete within the client's wait).",
)
@click.option("--replications", type=click.IntRange(min=2), default=6, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object.")
@click.option(
    "--large",
    is_flag=True,
    help="Run even when the estimated work is beyond what durosim runs without asking.",
)
def report(scenario, stress, out, rtts, replications, as_json, large):
    """Answer the seed analysis point by point for SCENARIO: each remedy's estimate beside its
    simulated effect, the claims the simulation contradicts, and the figures."""
    base = load_scenario(scenario, (), None, None)
    stressed = load_scenario(stress, (), None, None) if stress else None
    rtts = tuple(rtts) or (150.0, 70.0, 1.0)
    seed_report.check(base, stressed, rtts, replications, large)
    total = seed_report.steps(base, stressed, rtts, replications)
    try:
        with progress_bar(total, "simulating the report") as advance:
            written = seed_report.build(base, stressed, rtts, replications, Path(out), advance)
    except OSError as err:
        raise InputError(f"{out}: cannot write the report ({err.strerror})") from None
    if as_json:
        printed = {"report": str(written.page), "figures": [str(f) for f in written.figures]}
        if written.interrupted:
            printed["interrupted"] = True
        echo_json(printed)
    else:
        click.echo(f"wrote {written.page}")
    if written.interrupted:
        figures = ", ".join(f.name for f in written.figures) or "no figures"
        raise Interrupted(
            f"interrupted: {written.finished} of {total} variants simulated; {written.page} "
            f"has the sections that finished, with {figures}"
        )
