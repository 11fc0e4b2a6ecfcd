"""`durosim validate`: the model against real traces."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import click

from durosim.cli.common import echo_json, progress_bar
from durosim.cli.paths import figure_path, output_path, save_figure, write_text
from durosim.evidence.trace_format import read_trace
from durosim.sim.errors import InputError, Interrupted


def _parse_tolerances(values: tuple[str, ...]) -> dict[str, float] | None:
    from durosim.evidence.faults import RECOVERY, RERUNS, THROUGHPUT_AFTER
    from durosim.evidence.validate import ORCHESTRATION_METRICS, SERVER_BUSY, SUMMARY_METRICS

    metrics = sorted(set(ORCHESTRATION_METRICS + SUMMARY_METRICS))
    # in points, or in % of a fault metric: only by name
    named = [*metrics, SERVER_BUSY, RECOVERY, THROUGHPUT_AFTER, RERUNS]
    out: dict[str, float] = {}
    for text in values:
        name, _, pct = text.rpartition("=")
        try:
            value = float(pct.rstrip("%"))
        except ValueError:
            raise InputError(
                f"--tolerance {text!r}: expected PCT or METRIC=PCT, e.g. p95_ms=15"
            ) from None
        if value < 0:
            raise InputError(f"--tolerance {text!r}: a percentage must be >= 0")
        if not name:
            out.update({m: value for m in metrics})
        elif name in named:
            out[name] = value
        else:
            raise InputError(
                f"--tolerance {text!r}: unknown metric {name!r}; use one of {', '.join(named)}"
            )
    return out or None


def _trace_paths(paths: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.jsonl")))
        else:
            found.append(path)
    return found


@click.command()
@click.argument("traces", nargs=-1, required=True, type=click.Path())
@click.option(
    "--base",
    help="Scenario to start from, a file or a shipped name (default: the shipped one for the "
    "trace's runtime).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change one scenario value for every trace, after the trace's own conditions, e.g. "
    "--set database.scheduling=shared (repeatable).",
)
@click.option(
    "--replications",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Replications per trace.",
)
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    metavar="[METRIC=]PCT",
    help="Allowed error in %, for all metrics or one (repeatable). Default: 10% "
    "(p95 15%) at RTT >= 20 ms, 25% below; a recording's server_cpu_busy_pct is allowed 10 "
    "percentage points (set it by name).",
)
@click.option(
    "--infer",
    type=click.Choice(["rtt"]),
    help="First find the RTT at which the model reproduces each trace's throughput.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    help="Also write a Markdown report (with --infer rtt: the published rows at their "
    "stated RTT too, and the cross-checks between rows of one site).",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Also draw measured vs predicted latency CDFs, one panel per trace (.png, .svg or .pdf).",
)
@click.option(
    "--large",
    is_flag=True,
    help="Validate traces whose replay is far beyond the ordinary (refused without it).",
)
def validate(
    traces, base, overrides, replications, tolerances, infer, as_json, report, plot, large
):
    """Simulate the workload each TRACE (durosim-trace/1 file, or a folder of them) records and
    compare predicted with measured. Exits 1 when a metric is outside its tolerance."""
    from durosim.evidence.faults import UNITS as FAULT_UNITS
    from durosim.evidence.validate import (
        FAILED_FACTOR,
        SERVER_BUSY,
        Base,
        compare,
        cross_checks,
        failed_ok,
        scenario_for,
        work,
    )
    from durosim.experiments.size import check_size

    limits = _parse_tolerances(tolerances)
    if overrides:
        base = Base(base, tuple(overrides))
    paths = _trace_paths(traces)
    if not paths:
        raise InputError(f"no .jsonl traces found in {', '.join(traces)}")
    output_path(report, paths)
    figure_path(plot, paths)
    loaded = [read_trace(path) for path in paths]
    for trace in loaded:
        runs = work(trace, replications, infer == "rtt")
        check_size(replace(scenario_for(trace, base), replications=runs), large, what=trace.path)
    results = []
    interrupted = False
    try:
        total = sum(work(t, replications, infer == "rtt") for t in loaded)
        with progress_bar(total, "validating") as advance:
            for trace in loaded:
                results.append(compare(trace, base, replications, limits, infer == "rtt", advance))
    except KeyboardInterrupt:
        # keep what finished: report it below, then exit 130
        interrupted = True
        report = plot = None
    ok = all(r.ok for r in results)
    if report:
        from durosim.evidence.validation_report import markdown

        stated = cross = None
        if infer == "rtt":
            stated = [compare(t, base, replications, limits) for t in loaded if t.summaries]
            cross = cross_checks(results, loaded, base, replications)
        write_text(report, markdown(results, stated, cross, tuple(overrides)))
    if plot:
        from durosim.plots.validation import latency_cdfs

        panels = [
            (Path(r.trace).stem, r.measured_latencies_ms, r.simulated_latencies_ms)
            for r in results
            if r.measured_latencies_ms
        ]
        what = f"{len(panels)} traces" + (f" in {traces[0]}" if len(traces) == 1 else "")
        what = panels[0][0] if len(panels) == 1 else what
        figure = latency_cdfs(panels, f"measured vs simulated latency: {what}")
        save_figure(figure, plot)
    if as_json:
        out = {"traces": [r.as_json() for r in results], "ok": ok}
        if interrupted:
            out["interrupted"] = True
        echo_json(out)
    else:
        for r in results:
            head = r.trace
            if r.inferred_rtt_ms is not None:
                head += f"  (stated RTT {r.stated_rtt_ms} ms, inferred {r.inferred_rtt_ms} ms)"
            click.echo(head)
            for metric, value in r.measured.items():
                if metric == "failed":
                    predicted = r.predicted.get("failed", 0.0)
                    verdict = "ok" if failed_ok(value, predicted) else "OUTSIDE"
                    click.echo(
                        f"  {'failed':<18} measured {value:>10.4g}  predicted {predicted:>10.4g}"
                        f"  (within a factor of {FAILED_FACTOR:g}; none measured: < 1 a run)"
                        f"  {verdict}"
                    )
                    continue
                error = r.errors_pct[metric]
                verdict = "ok" if abs(error) <= r.tolerances_pct[metric] else "OUTSIDE"
                predicted = r.predicted.get(metric, math.nan)
                if metric in FAULT_UNITS:
                    unit = FAULT_UNITS[metric]
                    verdict = "ok" if abs(error) <= r.tolerances_pct[metric] else "OUTSIDE"
                    click.echo(
                        f"  {metric:<18} measured {value:>10.4g}  predicted {predicted:>10.4g}"
                        f"  error {error:+7.1f}{unit and ' ' + unit}  (allowed "
                        f"{r.tolerances_pct[metric]:.3g}{unit and ' ' + unit})  {verdict}"
                    )
                    continue
                if metric == SERVER_BUSY:
                    click.echo(
                        f"  {metric:<18} measured {value:>10.4g}  predicted {predicted:>10.4g}"
                        f"  error {error:+7.1f} points  (tolerance {r.tolerances_pct[metric]:g}"
                        f" points)  {verdict}"
                    )
                    continue
                if math.isnan(predicted):
                    click.echo(
                        f"  {metric:<18} measured {value:>10.4g}  predicted       none"
                        "  (no orchestration completed in the model)  OUTSIDE"
                    )
                    continue
                if math.isnan(error):
                    click.echo(
                        f"  {metric:<18} measured {value:>10.4g}  predicted {predicted:>10.4g}"
                        "  (no error in % against a measured 0)  OUTSIDE"
                    )
                    continue
                click.echo(
                    f"  {metric:<18} measured {value:>10.4g}"
                    f"  predicted {predicted:>10.4g}"
                    f"  error {error:+7.1f}%  (tolerance {r.tolerances_pct[metric]:g}%)  {verdict}"
                )
            if "wasserstein_ms" in r.extra:
                click.echo(
                    f"  latency distribution: Kolmogorov-Smirnov {r.extra['ks_distance']:.2f}, "
                    f"Wasserstein {r.extra['wasserstein_ms']:.3g} ms"
                )
        click.echo(f"{sum(r.ok for r in results)} of {len(results)} traces within tolerance")
    if interrupted:
        raise Interrupted(
            f"interrupted: {len(results)} of {len(paths)} traces validated, shown above"
        )
    sys.exit(0 if ok else 1)
