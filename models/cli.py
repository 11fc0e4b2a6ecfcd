"""The `durosim` command: the composition root (scenario files in, tables and JSON out)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from models import scenario as scenarios
from models.cli_paths import figure_path, output_path
from models.results import run_replications, summarize
from models.world import simulate
from sim.config import ConfigError
from sim.trace import TraceError, read_trace, write_trace


class InputError(click.ClickException):
    """Bad input (a config, a trace, a flag): one line, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"durosim: error: {self.format_message()}", err=True)


def _load(path: str, overrides: tuple[str, ...], seed: int | None, replications: int | None):
    extra = list(overrides)
    if seed is not None:
        extra.append(f"seed={seed}")
    if replications is not None:
        extra.append(f"replications={replications}")
    try:
        return scenarios.load(path, extra)
    except ConfigError as err:
        raise InputError(str(err)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="durosim")
def main() -> None:
    """durosim: predict the latency and throughput of duroxide on PostgreSQL, say where the time
    goes, and check the predictions against real measurements."""


def _describe(s: scenarios.Scenario) -> str:
    w, o = s.workload, s.runtime_options
    mode = {
        "sequential": "one at a time",
        "closed": f"{w.in_flight} in flight (closed)",
        "stress": f"stress test, {w.in_flight} in flight for {w.duration_s:g} s",
        "open": (
            f"arrivals replayed from {w.arrival_trace}"
            if w.arrival_trace
            else f"open arrivals at {w.arrival_rate_per_s:g}/s for {w.duration_s:g} s"
        ),
    }[w.mode]
    nodes = f"{s.host.nodes} nodes, " if s.host.nodes > 1 else ""
    return (
        f"{s.name} ({s.runtime}): RTT {s.network.rtt.mean * 1000:g} ms, {nodes}"
        f"{o.orchestration_concurrency}:{o.worker_concurrency}, pool {s.pool.size}, "
        f"poll {o.dispatcher_poll_interval_s * 1000:g} ms, fan-out {w.fanout} x "
        f"{w.activity.mean * 1000:g} ms activities, {mode}"
    )


def _ci_text(value: float | None) -> str:
    return "" if value is None else f" ± {value:.3g}"


def _print_summary(s: scenarios.Scenario, out: dict) -> None:
    echo = click.echo
    echo(_describe(s))
    echo(
        f"replications {out['replications']}, measured orchestrations {out['measured']}, "
        f"completed {out['completed']}, failed {out['failed']}"
    )
    lat, ci = out["latency_ms"], out["latency_ci_ms"]
    if lat["mean"] is None:
        echo("no orchestration completed")
        return
    echo("")
    echo("latency (ms)      mean      p50      p95      p99")
    echo("               " + "  ".join(f"{lat[k]:>7.1f}" for k in ("mean", "p50", "p95", "p99")))
    echo(
        "  95% CI ±      "
        + "  ".join(
            f"{ci[k]:>7.1f}" if ci[k] is not None else "      -"
            for k in ("mean", "p50", "p95", "p99")
        )
    )
    echo(
        f"throughput        {out['throughput_per_s']:.4g} orchestrations/s"
        f"{_ci_text(out['throughput_ci_per_s'])}"
    )
    if "total_s" in out:
        echo(
            f"total time        {out['total_s']:.2f} s{_ci_text(out['total_ci_s'])} (pump + drain)"
        )
    echo(f"turns             {out['turns_per_orchestration']:.2f} per orchestration")
    echo("")
    echo("DB calls per orchestration")
    calls = out["calls_per_orchestration"]
    width = max(len(op) for op in calls) if calls else 10
    for op, count in calls.items():
        echo(f"  {op:<{width}}  {count:7.2f}")
    echo(f"  {'total':<{width}}  {sum(calls.values()):7.2f}")
    echo("")
    echo("where the time goes (critical path, mean ms per orchestration)")
    total = sum(out["breakdown_ms"].values())
    for part, ms in out["breakdown_ms"].items():
        share = ms / total * 100.0 if total else 0.0
        echo(f"  {part:<15} {ms:9.1f}  {share:5.1f}%")
    echo(f"  {'latency':<15} {total:9.1f}")
    echo("")
    echo(
        f"pool: {out['pool_in_use_mean']:.2f} of {s.pool.size} connections busy on average, "
        f"{out['pool_waiting_mean']:.2f} callers waiting; "
        f"database cores {out['server_utilisation'] * 100:.1f}% busy"
    )
    echo(
        f"slots busy: orchestration {out['orchestration_slot_utilisation'] * 100:.0f}%, "
        f"worker {out['worker_slot_utilisation'] * 100:.0f}%; queued on average: "
        f"{out['orchestrator_queue_mean']:.2f} orchestrator messages, "
        f"{out['worker_queue_mean']:.2f} work items"
    )


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change one scenario value, e.g. --set network.rtt_ms=50 (repeatable).",
)
@click.option("--seed", type=int, help="Random seed (default: the scenario's).")
@click.option("--replications", type=click.IntRange(min=1), help="Independent replications.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option(
    "--trace",
    "trace_out",
    type=click.Path(dir_okay=False),
    help="Also write replication 0 as a durosim-trace/1 file, with one record per call.",
)
@click.option(
    "--timeline",
    type=click.Path(dir_okay=False),
    help="Also draw one orchestration's timeline: client, slots and connections as lanes, calls "
    "as bars (.png or .svg).",
)
@click.option(
    "--trace-events",
    type=click.Path(dir_okay=False),
    help="Also write replication 0 as a Chrome trace event file (opens in Perfetto).",
)
def run(scenario, overrides, seed, replications, as_json, trace_out, timeline, trace_events):
    """Simulate SCENARIO (a TOML file) and report latency, throughput, DB calls and where the
    time goes."""
    figure_path(timeline, InputError)
    output_path(trace_out, InputError)
    output_path(trace_events, InputError)
    s = _load(scenario, overrides, seed, replications)
    runs = run_replications(s)
    out = summarize(s, runs)
    if trace_out or timeline or trace_events:
        _write_replication_zero(s, trace_out, timeline, trace_events)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        _print_summary(s, out)


def _write_replication_zero(s: scenarios.Scenario, trace_out, timeline, trace_events) -> None:
    result = simulate(s, 0, keep_records=True)
    if timeline:
        from plots.timeline import timeline as draw

        first = next(r for r in result.records if r.get("type") == "orchestration"
                     and not r["warmup"] and "status" not in r)  # fmt: skip
        draw(result.records, first["instance"]).savefig(timeline, dpi=110)
    if trace_events:
        from models.chrome_trace import chrome_trace

        Path(trace_events).write_text(json.dumps(chrome_trace(result.records)), encoding="utf-8")
    if trace_out:
        _write_simulated_trace(s, result, trace_out)


def _write_simulated_trace(s: scenarios.Scenario, result, path: str) -> None:
    o, w = s.runtime_options, s.workload
    conditions = {
        "runtime": s.runtime,
        "rtt_ms": s.network.rtt.mean * 1000.0,
        "fanout": w.fanout,
        "activity_ms": w.activity.mean * 1000.0,
        "orchestration_concurrency": o.orchestration_concurrency,
        "worker_concurrency": o.worker_concurrency,
        "poll_interval_ms": o.dispatcher_poll_interval_s * 1000.0,
        "pool_size": s.pool.size,
        "mode": w.mode,
        "in_flight": 1 if w.mode == "sequential" else w.in_flight,
    }
    if w.mode == "stress":
        conditions["duration_s"] = w.duration_s
    records = list(result.records)
    if w.mode == "stress":
        records.append(
            {
                "type": "summary",
                "completed": result.completed,
                "throughput_per_s": result.throughput_per_s,
                "total_s": result.total_s,
            }
        )
    try:
        write_trace(
            path,
            f"durosim simulation of {s.name}, seed {s.seed}, replication 0",
            conditions,
            records,
        )
    except OSError as err:
        raise InputError(f"{path}: cannot write the trace ({err.strerror})") from None


def _parse_tolerances(values: tuple[str, ...]) -> dict[str, float] | None:
    from models.validate import ORCHESTRATION_METRICS, SUMMARY_METRICS

    metrics = sorted(set(ORCHESTRATION_METRICS + SUMMARY_METRICS))
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
        elif name in metrics:
            out[name] = value
        else:
            raise InputError(
                f"--tolerance {text!r}: unknown metric {name!r}; use one of {', '.join(metrics)}"
            )
    return out or None


def _register_commands() -> None:
    from models import cli_capacity, cli_measure, cli_plot, cli_sweep, cli_whatif

    cli_measure.register(main, InputError)
    cli_whatif.register(main, InputError, _load)
    cli_whatif.register_report(main, InputError, _load)
    cli_capacity.register(main, InputError, _load)
    cli_sweep.register_sweep(main, InputError, _load)
    cli_sweep.register_bench(main, InputError, _load)
    cli_plot.register(main, InputError)


_register_commands()


def _trace_paths(paths: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.jsonl")))
        else:
            found.append(path)
    return found


@main.command()
@click.argument("traces", nargs=-1, required=True, type=click.Path())
@click.option(
    "--base",
    type=click.Path(dir_okay=False),
    help="Scenario to start from (default: the shipped one for the trace's runtime).",
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
    "(p95 15%) at RTT >= 20 ms, 25% below.",
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
    help="Also draw measured vs predicted latency CDFs, one panel per trace (.png, .svg).",
)
def validate(traces, base, replications, tolerances, infer, as_json, report, plot):
    """Simulate the workload each TRACE (durosim-trace/1 file, or a folder of them) records and
    compare predicted with measured. Exits 1 when a metric is outside its tolerance."""
    from models.validate import compare, cross_checks

    limits = _parse_tolerances(tolerances)
    paths = _trace_paths(traces)
    if not paths:
        raise InputError(f"no .jsonl traces found in {', '.join(traces)}")
    output_path(report, InputError)
    figure_path(plot, InputError)
    results = []
    loaded = []
    for path in paths:
        try:
            trace = read_trace(path)
            results.append(compare(trace, base, replications, limits, infer == "rtt"))
            loaded.append(trace)
        except (TraceError, ConfigError) as err:
            raise InputError(str(err)) from None
    ok = all(r.ok for r in results)
    if report:
        from models.report import markdown

        stated = cross = None
        if infer == "rtt":
            stated = [compare(t, base, replications, limits) for t in loaded if t.summaries]
            cross = cross_checks(results, loaded, base, replications)
        Path(report).write_text(markdown(results, stated, cross), encoding="utf-8")
    if plot:
        from plots.validation import latency_cdfs

        figure = latency_cdfs(
            [
                (Path(r.trace).stem, r.measured_latencies_ms, r.simulated_latencies_ms)
                for r in results
                if r.measured_latencies_ms
            ]
        )
        figure.savefig(plot, dpi=110)
    if as_json:
        click.echo(json.dumps({"traces": [r.as_json() for r in results], "ok": ok}, indent=2))
    else:
        for r in results:
            head = r.trace
            if r.inferred_rtt_ms is not None:
                head += f"  (stated RTT {r.stated_rtt_ms} ms, inferred {r.inferred_rtt_ms} ms)"
            click.echo(head)
            for metric, value in r.measured.items():
                error = r.errors_pct[metric]
                verdict = "ok" if abs(error) <= r.tolerances_pct[metric] else "OUTSIDE"
                click.echo(
                    f"  {metric:<18} measured {value:>10.4g}"
                    f"  predicted {r.predicted[metric]:>10.4g}"
                    f"  error {error:+7.1f}%  (tolerance {r.tolerances_pct[metric]:g}%)  {verdict}"
                )
            if "wasserstein_ms" in r.extra:
                click.echo(
                    f"  latency distribution: Kolmogorov-Smirnov {r.extra['ks_distance']:.2f}, "
                    f"Wasserstein {r.extra['wasserstein_ms']:.3g} ms"
                )
        click.echo(f"{sum(r.ok for r in results)} of {len(results)} traces within tolerance")
    sys.exit(0 if ok else 1)


from models.recorder import record  # noqa: E402

main.add_command(record)
