"""`durosim ingest` and `durosim calibrate`: measurements in, traces and scenarios out."""

from __future__ import annotations

import os
from pathlib import Path

import click

from durosim.cli.common import echo_json
from durosim.cli.paths import output_path, write_atomically, write_text
from durosim.evidence.calibrate import CalibrationError, Fit, fit, from_trace, merge, scenario_toml
from durosim.evidence.conditions import conditions
from durosim.evidence.ingest import IngestError, LogData, read_logs
from durosim.evidence.trace_format import FORMAT, read_trace, write_trace


def _is_trace(path: str) -> bool:
    if not os.path.isfile(path):
        return False  # the log reader says why it cannot be read
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline(65536)
    except OSError:
        return False
    return f'"{FORMAT}"' in first


def _load(paths: tuple[str, ...]) -> LogData:
    parts = []
    logs = []
    for path in paths:
        if _is_trace(path):
            parts.append(from_trace(read_trace(path)))
        else:
            logs.append(path)
    if logs:
        parts.append(read_logs(logs))
    return merge(parts)


def _report_lines(data: LogData) -> list[str]:
    lines = [f"read {data.lines} lines from {len(data.paths)} file(s): {data.used} used"]
    for reason, count in data.skipped.most_common():
        lines.append(f"  skipped {count:6d}  {reason}")
    return lines


def _conditions(result: Fit | None) -> dict:
    if result is None:
        return {}
    return conditions(
        rtt_ms=round(result.rtt_ms, 3),
        rtt_source="calibrated from statements",
        runtime=result.runtime or None,
        fanout=result.fanout or None,
        activity_ms=None if result.activity_ms is None else round(result.activity_ms, 3),
        orchestration_concurrency=result.orchestration_concurrency or None,
        worker_concurrency=result.worker_concurrency or None,
    )


@click.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The durosim-trace/1 file to write.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was read as one JSON object.")
def ingest(logs, out, as_json):
    """Read duroxide logs (the JSON log of duroxide.init_tracing, its compact text form) and
    per-procedure timing exports, and write their provider calls as a durosim-trace/1 file.
    Lines that cannot be used are counted and reported."""
    output_path(out, logs)
    data = _load(logs)
    try:
        result = fit(data)
    except CalibrationError:
        result = None
    calls = data.calls
    if not calls:
        raise IngestError(
            f"{', '.join(data.paths)}: no statement with a timestamp, so no call records to "
            "write; `durosim calibrate` reads the files directly"
        )
    source = f"durosim ingest of {', '.join(Path(p).name for p in data.paths)}"
    write_atomically(out, lambda scratch: write_trace(scratch, source, _conditions(result), calls))
    if as_json:
        report = {
            "lines": data.lines,
            "used": data.used,
            "skipped": dict(data.skipped.most_common()),
            "statements": len(data.statements),
            "provider_call_lines": len(data.provider_calls),
            "call_records": len(calls),
            "out": str(out),
        }
        echo_json(report)
        return
    for line in _report_lines(data):
        click.echo(line)
    click.echo(
        f"{len(data.statements)} statements, {len(data.provider_calls)} provider-call "
        f"lines; wrote {len(calls)} call records to {out}"
    )


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Write the fitted scenario (TOML) here."
)
@click.option("--json", "as_json", is_flag=True, help="Print the fitted values as JSON.")
def calibrate(inputs, out, as_json):
    """Fit the RTT, the server cost per operation, the pool's round trips, the activity run
    time and the dispatcher slots to measurements (duroxide logs, timing exports, or traces
    with call records), and say how well the fit explains them."""
    if out:
        output_path(out, inputs)
    data = _load(inputs)
    result = fit(data)
    if out:
        write_text(out, scenario_toml(result))
    if as_json:
        echo_json(result.as_json())
        return
    for line in _report_lines(data):
        click.echo(line)
    click.echo(
        f"RTT {result.rtt_ms:.3f} ms from {result.rtt_samples} read and empty-fetch "
        f"statements (10-90% spread {result.rtt_spread_ms:.2f} ms)"
    )
    click.echo("server cost per operation (ms):   p50      p99      n")
    for op, f in sorted(result.server.items()):
        click.echo(f"  {op:<32}{f.p50_ms:7.3f}  {f.p99_ms:7.3f}  {f.n:5d}")
    if result.provider_call_ms:
        click.echo("whole provider calls, measured p50 vs 2 x RTT + server p50 (the pool's ping):")
        for op, (measured, predicted) in sorted(result.provider_call_ms.items()):
            change = f"({(predicted - measured) / measured * 100:+.1f}%)" if measured > 0 else ""
            click.echo(f"  {op:<32}{measured:8.2f}  {predicted:8.2f}  {change}")
        if result.ping_round_trips is not None:
            click.echo(f"pool round trips besides the statement: {result.ping_round_trips:.2f} RTT")
    click.echo(
        f"statements with a second round trip (first use on a connection): "
        f"{result.second_round_trip_share * 100:.1f}%"
    )
    if result.activity_ms is not None:
        click.echo(
            f"activity run time: mean {result.activity_ms:.3f} ms "
            f"({result.activity_samples} activities)"
        )
    if result.orchestration_concurrency or result.worker_concurrency:
        click.echo(
            f"dispatcher slots seen: {result.orchestration_concurrency or '?'}:"
            f"{result.worker_concurrency or '?'}"
        )
    if out:
        click.echo(f"wrote {out}")
