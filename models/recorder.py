"""`durosim record`: run the real duroxide runtime (PyPI `duroxide` 0.2.2) against a real
PostgreSQL and write what it measured as a `durosim-trace/1` file.

It drives the lab's workload (shared/lab/fanout.py): one process runs the runtime (O orchestration
and W worker dispatchers on one PostgresProvider, whose sqlx pool has DUROXIDE_PG_POOL_MAX
connections) and a client on the same provider. Orchestration "FanOut" schedules `fanout`
activities "A" and waits for all of them; each activity sleeps `activity_ms`. Modes: sequential
(start, wait, next), closed (K client threads, each starting the next orchestration when its last
one completes) and stress (duroxide's stress test, stress-tests/src/lib.rs `run_stress_test`: a
pump keeps K in flight for `duration_s`, then a drain checks every 100 ms until none is active;
throughput = completed / total time). The first `warmup` orchestrations run one at a time first
and are marked. Latency is the client's wall clock from just before `start_orchestration` to the
return of `wait_for_orchestration`, whose polling back-off is part of it, as in the lab.

The RTT is added by `models.delay_proxy` between the process and the server; the header's
`rtt_ms` is what the path really had, the median of 20 timed `select 1` on one open connection
through it. The server is a throwaway cluster (`models.pg_cluster`) unless --dsn names one.
Records are written and flushed one at a time, so an interrupted run keeps all it measured.
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click

from models.delay_proxy import ProxyProcess
from models.pg_cluster import ClusterError, throwaway_cluster
from models.real_driver import Driver, Failed, Plan, Progress, TraceWriter, _first_line

SHUTDOWN_TIMEOUT_MS = 5_000
SETTLE_S = 0.05
RTT_SAMPLES = 20
CALLS_RUST_LOG = "warn,duroxide_pg=debug,sqlx::query=debug,duroxide::runtime=debug"
MODES = ("sequential", "closed", "stress")


def _error(message: str, exit_code: int = 1) -> click.ClickException:
    from models.cli import InputError  # here, not at the top: models.cli imports this module

    err = InputError(message)
    err.exit_code = exit_code
    return err


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the run (duroxide reads them when it connects and when
    tracing starts) and put the old values back after."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Signals:
    """SIGTERM stops a recording as Ctrl-C does; once cleanup begins both are ignored, so a
    second Ctrl-C cannot leave a server or the proxy running."""

    def __init__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        self.old: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        if self.active:
            self.old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
            signal.signal(signal.SIGTERM, self._interrupt)
        return self

    @staticmethod
    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def ignore(self) -> None:
        if self.active:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.old.items():
            signal.signal(signum, handler)


def _import_duroxide():
    try:
        import duroxide
    except ImportError:
        raise _error(
            "the duroxide package is not installed: pip install 'durosim[record]'"
        ) from None
    return duroxide


def _check_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise _error(
            "the psycopg package is not installed: pip install 'durosim[record]'"
        ) from None


def _redact(dsn: str) -> str:
    """host:port/database of a URL, without user or password (for messages and the header)."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def _upstream(dsn: str) -> tuple[str, int]:
    parts = urlsplit(dsn)
    if not parts.hostname or "host=" in parts.query:
        raise _error(f"--dsn {_redact(dsn)}: --rtt-ms needs a TCP host in the URL", 2)
    return parts.hostname, parts.port or 5432


def _through(dsn: str, host: str, port: int) -> str:
    """The same URL, pointed at host:port (the delay proxy)."""
    parts = urlsplit(dsn)
    user, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}{at}{host}:{port}"))


def _server(dsn: str) -> tuple[str, str]:
    """Connect straight to the server: ("postgresql-15", "PostgreSQL 15.18"), or a one-line
    error saying why it cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            version = conn.info.server_version
    except psycopg.Error as err:
        raise _error(f"cannot connect to the database {_redact(dsn)}: {_first_line(err)}") from None
    major, minor = version // 10000, version % 10000
    return f"postgresql-{major}", f"PostgreSQL {major}.{minor}"


def measure_rtt_ms(dsn: str, samples: int = RTT_SAMPLES) -> float:
    """The path's real round-trip time: the median of timed `select 1` on one open connection
    (the lab's psql `\\timing` check)."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute("select 1").fetchone()
            times_ms = []
            for _ in range(samples):
                start = time.perf_counter()
                conn.execute("select 1").fetchone()
                times_ms.append((time.perf_counter() - start) * 1000.0)
    except psycopg.Error as err:
        raise _error(f"cannot time select 1 via {_redact(dsn)}: {_first_line(err)}") from None
    return round(statistics.median(times_ms), 2)


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute("set lock_timeout = '5s'")
            conn.execute(f'drop schema if exists "{schema}" cascade')
    except psycopg.Error as err:
        click.echo(
            f"durosim: warning: could not drop schema {schema}: {_first_line(err)}", err=True
        )


def _connect(duroxide, dsn: str, schema: str):
    try:
        return duroxide.PostgresProvider.connect_with_schema(dsn, schema)
    except Exception as err:
        raise _error(f"duroxide cannot connect to {_redact(dsn)}: {_first_line(err)}") from None


@contextmanager
def _runtime(duroxide, server_dsn: str, path_dsn: str, schema: str, plan: Plan) -> Iterator:
    """The runtime and a client on one provider reached through `path_dsn` (as fanout.py has
    them); yields the client and shuts the runtime down on exit."""
    if path_dsn != server_dsn:
        # Migrate straight to the server first (the provider is dropped at once), as the lab's
        # sweep.sh did: through the proxy the migrations take ~200 round trips (10 s at 50 ms).
        _connect(duroxide, server_dsn, schema)
    provider = _connect(duroxide, path_dsn, schema)
    options = duroxide.RuntimeOptions(
        orchestration_concurrency=plan.orchestration_concurrency,
        worker_concurrency=plan.worker_concurrency,
        dispatcher_poll_interval_ms=plan.poll_interval_ms,
    )
    runtime = duroxide.Runtime(provider, options)
    activity_s = plan.activity_ms / 1000.0

    def activity(ctx, i):
        if activity_s > 0:
            time.sleep(activity_s)
        return i * 2

    def fan_out(ctx, data):
        results = yield ctx.all([ctx.schedule_activity("A", i) for i in range(data["n"])])
        return len(results)

    runtime.register_activity("A", activity)
    runtime.register_orchestration("FanOut", fan_out)
    failure: list[BaseException] = []

    def start() -> None:
        try:
            runtime.start()
        except Exception as err:
            failure.append(err)

    # The SDK documents start() as blocking until shutdown (0.2.2 returns once the dispatchers
    # run): either way a thread of its own keeps this one free.
    starter = threading.Thread(target=start, name="duroxide-runtime", daemon=True)
    starter.start()
    starter.join(timeout=2.0)
    if failure:
        raise _error(f"the duroxide runtime did not start: {_first_line(failure[0])}")
    try:
        yield duroxide.Client(provider)
    finally:
        runtime.shutdown(SHUTDOWN_TIMEOUT_MS)
        starter.join(timeout=SHUTDOWN_TIMEOUT_MS / 1000.0)
        # The shutdown returns at once; the pool then checks the connections the dispatchers
        # let go (one round trip each). Stopping the proxy under those checks makes sqlx warn.
        time.sleep(SETTLE_S + 2 * plan.rtt_nominal_ms / 1000.0)


def _call_records(log_path: Path, t0_wall: float) -> list[dict]:
    """One `call` record per provider statement in duroxide's debug log from the first
    orchestration's start on, on the trace's clock. Earlier lines are the schema's migrations
    (whose DDL names the procedures) and the dispatchers' first idle polls."""
    from models.ingest import IngestError, read_duroxide_log

    try:
        data = read_duroxide_log(log_path)
    except IngestError as err:
        raise _error(f"--calls: {err}") from None
    timed = [s for s in data.statements if s.end_s is not None]
    if not timed:
        return []
    # LogData.calls counts from its first statement's start, an absolute wall-clock time.
    origin_s = min(s.end_s - s.elapsed_ms / 1000.0 for s in timed)
    shift_ms = (origin_s - t0_wall) * 1000.0
    out = []
    for call in data.calls:
        start_ms = round(call["start_ms"] + shift_ms, 3)
        if start_ms >= 0:
            out.append(dict(call, start_ms=start_ms, end_ms=round(call["end_ms"] + shift_ms, 3)))
    return out


def _source(plan: Plan, server: str, where: str, calls: bool) -> str:
    if plan.rtt_nominal_ms > 0:
        path = (
            f"RTT {plan.rtt_nominal_ms:g} ms added by durosim's delay proxy on 127.0.0.1 "
            "(RTT/2 per direction, pipelined); rtt_ms = median of 20 timed select 1 through it"
        )
    else:
        path = "no added RTT; rtt_ms = median of 20 timed select 1 straight to the server"
    mode = {
        "sequential": "one at a time",
        "closed": f"{plan.in_flight} client loops (closed)",
        "stress": f"stress test, {plan.in_flight} in flight for {plan.duration_s:g} s then drain",
    }[plan.mode]
    text = (
        f"durosim record: duroxide {_version('duroxide')} (PyPI) + {server} ({where}), {path}; "
        f"latency = client wall clock from start_orchestration to the return of "
        f"wait_for_orchestration; fan-out workload of shared/lab/fanout.py, {mode}; "
        f"{os.cpu_count()} CPUs"
    )
    if calls:
        text += "; call records from duroxide's debug log (sqlx statement elapsed)"
    return text


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _concurrency(text: str) -> tuple[int, int]:
    o_text, sep, w_text = text.partition(":")
    try:
        o, w = int(o_text), int(w_text)
    except ValueError:
        o = w = 0
    if not sep or o < 1 or w < 1:
        raise _error(f"--concurrency {text!r}: expected O:W with whole numbers >= 1, e.g. 2:2", 2)
    return o, w


def _plan(options: dict) -> Plan:
    mode = options["mode"]
    misplaced = [
        flag
        for flag, key, modes in (
            ("--in-flight", "in_flight", ("closed", "stress")),
            ("--count", "count", ("sequential", "closed")),
            ("--duration-s", "duration_s", ("stress",)),
        )
        if options[key] is not None and mode not in modes
    ]
    if misplaced:
        raise _error(f"{', '.join(misplaced)} does not apply to --mode {mode}", 2)
    o, w = _concurrency(options["concurrency"])
    return Plan(
        rtt_nominal_ms=options["rtt_ms"],
        fanout=options["fanout"],
        activity_ms=options["activity_ms"],
        orchestration_concurrency=o,
        worker_concurrency=w,
        mode=mode,
        in_flight=options["in_flight"] or 4,
        count=options["count"] or 20,
        duration_s=options["duration_s"] or 10.0,
        warmup=options["warmup"],
        poll_interval_ms=options["poll_interval_ms"],
        pool_size=options["pool_size"],
    )


@click.command()
@click.option(
    "--rtt-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="MS",
    help="Round-trip time to add between runtime and database (0: no proxy).",
)
@click.option("--fanout", type=click.IntRange(min=1), default=5, show_default=True, metavar="N")
@click.option(
    "--activity-ms",
    type=click.FloatRange(min=0),
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
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="stress: how long the pump keeps K in flight [default: 10].",
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
@click.option("--calls", is_flag=True, help="Also add one call record per provider statement.")
def record(**options):
    """Run the real duroxide runtime against a real PostgreSQL and write a durosim-trace/1 file
    of what it measured (needs the record extra: pip install 'durosim[record]')."""
    plan = _plan(options)
    out = Path(options["out"])
    dsn = options["dsn"]
    if not out.resolve().parent.is_dir():
        raise _error(f"--out {out}: its folder does not exist", 2)
    if dsn is not None and urlsplit(dsn).scheme not in ("postgres", "postgresql"):
        raise _error("--dsn: expected a URL, postgres://USER@HOST:PORT/DATABASE", 2)
    duroxide = _import_duroxide()
    _check_psycopg()
    env = {"DUROXIDE_PG_POOL_MAX": str(plan.pool_size)}
    if options["calls"]:
        env["RUST_LOG"] = CALLS_RUST_LOG
    writer: TraceWriter | None = None
    with _Signals() as signals, ExitStack() as stack:
        try:
            stack.enter_context(_environment(env))
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="durosim-rec-")))
            if dsn is None:
                server_dsn, where = stack.enter_context(throwaway_cluster()), "throwaway cluster"
            else:
                server_dsn, where = dsn, f"the database at {_redact(dsn)}"
            database, server = _server(server_dsn)
            path_dsn = server_dsn
            if plan.rtt_nominal_ms > 0:
                proxy = stack.enter_context(
                    ProxyProcess(*_upstream(server_dsn), plan.rtt_nominal_ms)
                )
                path_dsn = _through(server_dsn, proxy.host, proxy.port)
            rtt_ms = measure_rtt_ms(path_dsn)
            schema = f"durosim_{uuid.uuid4().hex[:8]}"
            if dsn is not None:
                stack.callback(_drop_schema, server_dsn, schema)
            source = _source(plan, server, where, options["calls"])
            try:
                writer = TraceWriter(out, source, plan.conditions(rtt_ms, database))
            except OSError as err:
                raise _error(f"--out {out}: cannot write ({err.strerror})", 2) from None
            stack.callback(writer.close)
            log_path = scratch / "duroxide.log"
            if options["calls"]:
                try:
                    duroxide.init_tracing(str(log_path), log_format="json")
                except RuntimeError as err:
                    raise _error(f"--calls: {_first_line(err)} (once per process)") from None
            length = plan.warmup + (100 if plan.mode == "stress" else plan.count)
            with (
                _runtime(duroxide, server_dsn, path_dsn, schema, plan) as client,
                Progress(length, f"recording {plan.mode}") as progress,
            ):
                driver = Driver(client, plan, writer, progress)
                _run_interruptibly(driver, signals.ignore)
            if options["calls"] and driver.t0_wall is not None:
                for call in _call_records(log_path, driver.t0_wall):
                    writer.write(call)
        except KeyboardInterrupt:
            kept = writer.written if writer else 0
            raise _error(
                f"interrupted; {out} keeps the {kept} records written so far", 130
            ) from None
        except (ClusterError, OSError) as err:
            raise _error(str(err)) from None
        except Failed as err:
            kept = writer.written if writer else 0
            raise _error(f"{err}; {out} keeps the {kept} records written so far") from None
        finally:
            signals.ignore()
    click.echo(_summary_line(out, driver, rtt_ms))


def _run_interruptibly(driver: Driver, on_interrupt: Callable[[], None]) -> None:
    """Run the workload in a thread; this one waits in short joins so Ctrl-C lands at once
    (a client call blocks in Rust for as long as an orchestration takes)."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            driver.run()
        except BaseException as err:
            failure.append(err)

    worker = threading.Thread(target=work, name="durosim-workload", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        on_interrupt()
        driver.stop.set()
        raise
    if failure:
        raise failure[0]


def _summary_line(out: Path, driver: Driver, rtt_ms: float) -> str:
    text = f"{out}: {driver.writer.written} records, RTT {rtt_ms:g} ms"
    if driver.summary is not None:
        s = driver.summary
        text += f", {s['completed']} completed in {s['total_s']:g} s ({s['throughput_per_s']:g}/s)"
    return text
