"""`durosim run` and `durosim scenarios`: simulate one scenario and report it; list the shipped
ones."""

from __future__ import annotations

import json
from pathlib import Path

import click

from durosim import __version__, api
from durosim.cli.common import echo_json, load_scenario, progress_bar
from durosim.cli.paths import (
    figure_path,
    output_path,
    save_figure,
    write_atomically,
    write_text,
)
from durosim.evidence.conditions import of_scenario
from durosim.evidence.trace_format import write_trace
from durosim.experiments.provenance import provenance
from durosim.experiments.size import check_size, orchestrations
from durosim.model.scenario import Scenario, shipped
from durosim.model.world import simulate
from durosim.sim.config import dump_toml, read_toml, to_table
from durosim.sim.errors import InputError, Interrupted
from durosim.sim.stats import json_safe


def _describe(s: Scenario) -> str:
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
    if w.workflows:
        started = [f for f in w.workflows if f.weight is not None]
        total = sum(f.weight for f in started)
        work = "workflows " + ", ".join(f"{f.name} {f.weight / total:.0%}" for f in started)
    else:
        work = f"fan-out {w.fanout} x {w.activity.mean * 1000:g} ms activities"
    return (
        f"{s.name} ({s.runtime}): RTT {s.network.rtt.mean * 1000:g} ms, {nodes}"
        f"{o.orchestration_concurrency}:{o.worker_concurrency}, pool {s.pool.size}, "
        f"poll {o.dispatcher_poll_interval_s * 1000:g} ms, {work}, {mode}"
    )


def _ci_text(value: float | None) -> str:
    return "" if value is None else f" ± {value:.3g}"


def _print_summary(s: Scenario, out: dict, verdict: str | None = None) -> None:
    echo = click.echo
    echo(_describe(s))
    echo(
        f"replications {out['replications']}, measured orchestrations {out['measured']}, "
        f"completed {out['completed']}, failed {out['failed']}"
    )
    lat, ci = out["latency_ms"], out["latency_ci_ms"]
    if lat["mean"] is None:
        echo("no orchestration completed")
        _connections(out, s, echo)
        _faults(out, echo)
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
    if "workflows" in out:
        echo("")
        echo("by workflow        share   orch/s      mean      p50      p95      p99")
        for name, row in out["workflows"].items():
            lat = row["latency_ms"]
            echo(
                f"  {name:<15} {row['share'] * 100:5.1f}%  {row['throughput_per_s']:7.4g}  "
                + "  ".join(f"{lat[k]:>7.1f}" for k in ("mean", "p50", "p95", "p99"))
            )
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
        if part in ("timer", "event_wait") and not ms:
            continue  # parts of workflows with timers and events only
        share = ms / total * 100.0 if total else 0.0
        echo(f"  {part:<15} {ms:9.1f}  {share:5.1f}%")
    echo(f"  {'latency':<15} {total:9.1f}")
    echo("")
    echo(
        f"pool: {out['pool_in_use_mean']:.2f} of {s.pool.size} connections busy on average, "
        f"{out['pool_waiting_mean']:.2f} callers waiting; "
        f"database cores {out['server_utilisation'] * 100:.1f}% busy"
    )
    rates = out["db_calls_per_s"]
    echo(
        f"DB calls per second: {rates['busy']:.1f} busy + {rates['idle']:.1f} idle "
        f"(empty fetches) = {rates['total']:.1f}"
    )
    echo(
        f"slots busy: orchestration {out['orchestration_slot_utilisation'] * 100:.0f}%, "
        f"worker {out['worker_slot_utilisation'] * 100:.0f}%; queued on average: "
        f"{out['orchestrator_queue_mean']:.2f} orchestrator messages, "
        f"{out['worker_queue_mean']:.2f} work items"
    )
    _connections(out, s, echo)
    _faults(out, echo)
    if verdict:
        echo(verdict)


def _faults(out: dict, echo) -> None:
    """What the scenario's faults did: recovery, activities run again (the timeline: --json)."""
    report = out.get("faults")
    if report is None:
        return
    echo("")
    echo("faults: " + "; ".join(report["faults"]))
    ci, mean_s = report["recovery_ci_s"], report["recovery_s"]
    when = (
        "not in every run" if mean_s is None
        else f"{mean_s:.1f} s after the fault ended{'' if ci is None else f' (±{ci:.1f})'}"
    )  # fmt: skip
    echo(
        f"recovery: p95 back under {report['slo_ms']:.0f} ms {when}; each run: "
        + ", ".join("never" if x is None else f"{x:g} s" for x in report["recovery_per_run_s"])
    )
    peak = max((b["backlog"] for b in report["timeline"]), default=0.0)
    echo(
        f"activities run again (never acknowledged the first time): "
        f"{report['activity_reruns_per_run']:.1f} a run; largest backlog {peak:.1f} "
        f"orchestrations; per {report['bucket_s']:g} s: --json, or durosim plot --kind faults"
    )


def _connections(out: dict, s, echo) -> None:
    """A line when calls timed out for want of a connection: the full server refused one, or
    the pool had no permit free within the acquire timeout."""
    timed_out = out["pool_timed_out_per_run"]
    if not timed_out:
        return
    permit = out["permit_timed_out_per_run"]
    refused = timed_out - permit
    causes = []
    if refused > 0:
        causes.append(
            f"{refused:.1f} for a connection the server refused (its "
            f"{s.database.max_connections} are all open, {out['connections_open']:.0f} at the "
            "end)"
        )
    if permit > 0:
        causes.append(f"{permit:.1f} queued for a permit of the pool (size {s.pool.size})")
    echo(
        f"connections: {timed_out:.1f} calls a run waited out the 30 s acquire timeout, "
        f"{' and '.join(causes)} (sqlx PoolTimedOut; duroxide-pg retries the orchestration "
        "fetch and ack 3 times)"
    )


@click.command()
@click.argument("scenario")
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
    "as bars (.png, .svg or .pdf).",
)
@click.option(
    "--trace-events",
    type=click.Path(dir_okay=False),
    help="Also write replication 0 as a Chrome trace event file (opens in Perfetto).",
)
@click.option(
    "--save",
    type=click.Path(file_okay=False),
    help="Keep a run folder (new or empty): the resolved scenario, the results as JSON and CSV, "
    "replication 0's trace and its timeline.",
)
@click.option(
    "--large",
    is_flag=True,
    help="Run even when the estimated work is beyond what durosim runs without asking.",
)
def run(scenario, overrides, seed, replications, as_json, trace_out, timeline, trace_events,
        save, large):  # fmt: skip
    """Simulate SCENARIO (a TOML file, or a shipped scenario's name: see `durosim scenarios`)
    and report latency, throughput, DB calls and where the time goes."""
    inputs = [scenario] if Path(scenario).is_file() else []
    figure_path(timeline, inputs)
    output_path(trace_out, inputs)
    output_path(trace_events, inputs)
    folder = _run_folder(save)
    s = load_scenario(scenario, overrides, seed, replications)
    check_size(s, large)
    expected = max(1, round(orchestrations(s)[0])) * s.replications
    try:
        with progress_bar(expected, "simulating") as advance:
            seen = [0]

            def done() -> None:  # the estimate may be short: the bar stops at its end
                seen[0] += 1
                if seen[0] <= expected:
                    advance()

            result = api.run(s, on_done=done)
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted: a run reduces its replications together, so nothing was kept; "
            "--replications 1 or a shorter workload runs sooner"
        ) from None
    out = result.to_dict()
    verdict = result.past_saturation
    traces, timelines = [p for p in [trace_out] if p], [p for p in [timeline] if p]
    if folder is not None:
        _save(folder, s, result.rows(), out)
        traces.append(str(folder / "trace.jsonl"))
        timelines.append(str(folder / "timeline.png"))
    if traces or timelines or trace_events:
        # replication 0 simulated once, for the run folder and for what was asked besides
        _write_replication_zero(s, traces, timelines, trace_events)
    if as_json:
        echo_json(out)
    else:
        _print_summary(s, out, verdict)


def _run_folder(save: str | None) -> Path | None:
    """The --save folder, checked before any work: new, or an empty folder."""
    if save is None:
        return None
    folder = Path(save)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(
            f"--save {save}: exists and is not an empty folder; nothing is overwritten"
        )
    output_path(save)  # its parent folder must exist
    return folder


def _resolved(s: Scenario) -> str:
    """The scenario as TOML, every value resolved, under a line naming what resolved it."""
    digest = provenance(s)["scenario_digest"]
    header = f"# {s.name}, resolved by durosim {__version__} (scenario digest {digest})\n"
    return header + dump_toml(to_table(s))


def _save(folder: Path, s: Scenario, rows: list[dict], out: dict) -> None:
    """The run folder's scenario and results (replication 0's files are written by run)."""
    import csv

    folder.mkdir(exist_ok=True)
    (folder / "scenario.toml").write_text(_resolved(s), encoding="utf-8")
    (folder / "results.json").write_text(
        json.dumps(json_safe(out), indent=2, allow_nan=False), "utf-8"
    )
    with open(folder / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_replication_zero(
    s: Scenario, traces: list[str], timelines: list[str], trace_events: str | None
) -> None:
    result = simulate(s, 0, keep_records=True)
    if timelines:
        from durosim.plots.timeline import timeline as draw

        first = next((r for r in result.records if r.get("type") == "orchestration"
                      and not r["warmup"] and "status" not in r), None)  # fmt: skip
        if first is None:
            raise InputError(
                f"--timeline {timelines[0]}: no measured orchestration completed in replication "
                "0; nothing to draw"
            )
        figure = draw(result.records, first["instance"])
        for path in timelines:
            save_figure(figure, path)
    if trace_events:
        from durosim.experiments.chrome_trace import chrome_trace

        write_text(trace_events, json.dumps(chrome_trace(result.records)))
    for path in traces:
        _write_simulated_trace(s, result, path)


def _write_simulated_trace(s: Scenario, result, path: str) -> None:
    w = s.workload
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
    source = f"durosim simulation of {s.name}, seed {s.seed}, replication 0"
    write_atomically(path, lambda scratch: write_trace(scratch, source, of_scenario(s), records))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def scenarios(as_json):
    """List the scenarios shipped with durosim, which `durosim run NAME` and the other commands
    take by name."""
    found = shipped()
    if as_json:
        rows = [
            {"name": name, "description": read_toml(path).get("description", "")}
            for name, path in found.items()
        ]
        echo_json({"scenarios": rows})
        return
    width = max(len(name) for name in found)
    for name, path in found.items():
        click.echo(f"{name:<{width}}  {read_toml(path).get('description', '')}")


@click.command()
@click.argument("scenario")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change one scenario value first (repeatable).",
)
def show(scenario, overrides):
    """Print SCENARIO resolved: every value, the defaults included, as TOML that loads back to
    the same scenario."""
    click.echo(_resolved(load_scenario(scenario, overrides)), nl=False)


INIT_HEADER = """# {name}: a durosim scenario. Every key is here with duroxide's default; the ones
# that matter most are uncommented. Change what differs for your deployment, delete the rest or
# leave it.
# Units: *_ms in milliseconds, *_s in seconds, *_per_s per second; a time may also be a
# distribution, e.g. rtt = {{ kind = "lognormal", p50_ms = 20, p99_ms = 45 }}.
# Workflows: see the README's "Your workflows"; `durosim show` prints a scenario resolved.
"""
_INIT_KEEP = {
    "name", "description", "runtime", "seed", "replications", "rtt_ms", "cores", "size",
    "orchestration_concurrency", "worker_concurrency", "dispatcher_poll_interval_ms", "nodes",
    "fanout", "activity_ms", "mode", "count",
}  # fmt: skip


@click.command()
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False), help="The file to write [NAME.toml].")
def init(name, out):
    """Write a scenario template NAME.toml with every key and its default, commented."""
    from durosim.model.scenario import Scenario

    path = Path(out or f"{name}.toml")
    if path.exists():
        raise InputError(f"{path}: exists; nothing is overwritten")
    output_path(str(path))
    table = to_table(Scenario(name=name, description=f"{name}: describe the deployment here"))
    lines = []
    for line in dump_toml(table).splitlines():
        key = line.split("=", 1)[0].strip()
        if line and not line.startswith("[") and key not in _INIT_KEEP:
            line = "# " + line
        lines.append(line)
    text = INIT_HEADER.format(name=name) + "\n" + "\n".join(lines) + "\n"
    write_text(path, text)
    click.echo(f"wrote {path}")
