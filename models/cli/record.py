"""`durosim record`: the real runtime on a real PostgreSQL, measured into a trace."""

from __future__ import annotations

import json

import click

from durosim.cli.params import Finite, PositiveFinite
from durosim.cli.paths import output_path
from durosim.lab.recorder import MODES
from durosim.lab.recorder import record as record_run


@click.command()
@click.option(
    "--rtt-ms",
    type=Finite(0.0),
    default=0.0,
    show_default=True,
    metavar="MS",
    help="Round-trip time to add between runtime and database (0: no proxy).",
)
@click.option("--fanout", type=click.IntRange(min=1), default=5, show_default=True, metavar="N")
@click.option(
    "--activity-ms",
    type=Finite(0.0),
    default=0.0,
    show_default=True,
    metavar="MS",
    help="How long each activity runs.",
)
@click.option(
    "--concurrency",
    default="2:2",
    show_default=True,
    metavar="O:W",
    help="orchestration_concurrency:worker_concurrency.",
)
@click.option("--mode", type=click.Choice(MODES), default="sequential", show_default=True)
@click.option(
    "--rate",
    type=PositiveFinite(),
    metavar="R",
    help="open: Poisson arrivals per second.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    metavar="N",
    help="open: the seed of the arrival times [default: 1].",
)
@click.option(
    "--wait-timeout-ms",
    type=click.IntRange(min=1),
    default=120_000,
    show_default=True,
    metavar="MS",
    help="How long the client waits for each orchestration; one that takes longer is recorded "
    "as not completed.",
)
@click.option(
    "--workload",
    metavar="SCENARIO",
    help="Start the workflows of this scenario (a file or a shipped name) in its mix, instead "
    "of the fan-out of --fanout activities.",
)
@click.option(
    "--nodes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Runtime nodes against the database, each a process with its own pool and "
    "--concurrency slots; the client load runs on the first.",
)
@click.option(
    "--db-cores",
    type=click.IntRange(min=1),
    metavar="N",
    help="Pin the throwaway cluster to N CPUs (taskset) and everything else to the others; "
    "the trace says database_cores = N [default: not pinned].",
)
@click.option(
    "--in-flight",
    type=click.IntRange(min=1),
    metavar="K",
    help="closed, stress: orchestrations in flight [default: 4].",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    metavar="N",
    help="sequential, closed: measured orchestrations [default: 20].",
)
@click.option(
    "--duration-s",
    type=PositiveFinite(),
    metavar="S",
    help="stress: how long the pump keeps K in flight; open: how long orchestrations arrive "
    "[default: 10].",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    metavar="N",
    help='Orchestrations run first, one at a time, marked "warmup".',
)
@click.option(
    "--poll-interval-ms",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    metavar="MS",
    help="RuntimeOptions.dispatcher_poll_interval_ms.",
)
@click.option(
    "--pool-size",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="N",
    help="Connection pool size (DUROXIDE_PG_POOL_MAX).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Trace file to write.")
@click.option(
    "--dsn",
    metavar="URL",
    help="Record against this database (postgres://...) in a fresh schema, dropped after, "
    "instead of a throwaway cluster.",
)
@click.option(
    "--fault",
    multiple=True,
    metavar="SPEC",
    help="Inject a fault, S seconds from the run's start (repeatable): database@S+D stops the "
    "throwaway PostgreSQL (pg_ctl stop -m fast) for D s; link@S+D holds all traffic in the delay "
    "proxy for D s (needs --rtt-ms > 0); nodeK@S kills runtime node K (2..--nodes) with "
    "SIGKILL, nodeK@S+D starts a fresh one D s later. The header's conditions.faults says when "
    "each was applied and ended.",
)
@click.option("--calls", is_flag=True, help="Also add one call record per provider statement.")
@click.option(
    "--server-waits",
    is_flag=True,
    help="Sample pg_stat_activity every 10 ms and say in the header where the server's active "
    "backends were: on a core or waiting (for which lock or I/O), by procedure.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON object.")
def record(as_json, **options):
    """Run the real duroxide runtime against a real PostgreSQL and write a durosim-trace/1 file
    of what it measured (needs the record extra: pip install 'durosim[record]')."""
    output_path(options["out"])
    written = record_run(options)
    line = written.pop("line")
    click.echo(json.dumps(written, indent=2) if as_json else line)
