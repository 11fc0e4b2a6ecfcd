"""The real duroxide runtime and its database for `durosim record`: importing the SDK, the
database's address as the runtime reaches it (directly, or through the delay proxy), the RTT
really achieved (timed `select 1`), and a runtime started and stopped cleanly around a run."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import click

from durosim.lab.driver import Plan, first_line
from durosim.lab.executions import Counter
from durosim.sim.errors import ExternalError, InputError

SHUTDOWN_TIMEOUT_MS = 5_000
SETTLE_S = 0.05
RTT_SAMPLES = 20


def import_duroxide():
    try:
        import duroxide
    except ImportError:
        raise ExternalError(
            "the duroxide package is not installed: pip install 'durosim[record]'"
        ) from None
    return duroxide


def check_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ExternalError(
            "the psycopg package is not installed: pip install 'durosim[record]'"
        ) from None


def redact(dsn: str) -> str:
    """host:port/database of a URL, without user or password (for messages and the header)."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def upstream(dsn: str) -> tuple[str, int]:
    parts = urlsplit(dsn)
    if not parts.hostname or "host=" in parts.query:
        raise InputError(f"--dsn {redact(dsn)}: --rtt-ms needs a TCP host in the URL")
    return parts.hostname, parts.port or 5432


def through(dsn: str, host: str, port: int) -> str:
    """The same URL, pointed at host:port (the delay proxy)."""
    parts = urlsplit(dsn)
    user, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}{at}{host}:{port}"))


def server_of(dsn: str) -> tuple[str, str]:
    """Connect straight to the server: ("postgresql-15", "PostgreSQL 15.18"), or a one-line
    error saying why it cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            version = conn.info.server_version
    except psycopg.Error as err:
        raise ExternalError(
            f"cannot connect to the database {redact(dsn)}: {first_line(err)}"
        ) from None
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
        raise ExternalError(f"cannot time select 1 via {redact(dsn)}: {first_line(err)}") from None
    return round(statistics.median(times_ms), 2)


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute("set lock_timeout = '5s'")
            conn.execute(f'drop schema if exists "{schema}" cascade')
    except psycopg.Error as err:
        click.echo(f"durosim: warning: could not drop schema {schema}: {first_line(err)}", err=True)


def connect(duroxide, dsn: str, schema: str):
    try:
        return duroxide.PostgresProvider.connect_with_schema(dsn, schema)
    except Exception as err:
        raise ExternalError(
            f"duroxide cannot connect to {redact(dsn)}: {first_line(err)}"
        ) from None


def build_runtime(duroxide, provider, plan: Plan, count: Counter | None = None):
    """A runtime on `provider` with the lab's fan-out workload registered (as fanout.py has it):
    orchestration "FanOut" schedules `n` activities "A" and waits for all; each sleeps
    `activity_ms`. `count(instance, execution, index)` is called as each activity begins
    (`durosim.lab.executions`)."""
    options = duroxide.RuntimeOptions(
        orchestration_concurrency=plan.orchestration_concurrency,
        worker_concurrency=plan.worker_concurrency,
        dispatcher_poll_interval_ms=plan.poll_interval_ms,
    )
    runtime = duroxide.Runtime(provider, options)
    activity_s = plan.activity_ms / 1000.0

    def activity(ctx, i):
        if count is not None:
            count(ctx.instance_id, ctx.execution_id, i)
        if activity_s > 0:
            time.sleep(activity_s)
        return i * 2

    def fan_out(ctx, data):
        results = yield ctx.all([ctx.schedule_activity("A", i) for i in range(data["n"])])
        return len(results)

    runtime.register_activity("A", activity)
    runtime.register_orchestration("FanOut", fan_out)
    if plan.workload:
        from durosim.lab.workflows import register

        register(runtime, plan.workflows(), count)
    return runtime


@contextmanager
def started(runtime, plan: Plan) -> Iterator[None]:
    """The runtime's dispatchers running for the block; shut down after it."""
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
        raise ExternalError(f"the duroxide runtime did not start: {first_line(failure[0])}")
    try:
        yield
    finally:
        runtime.shutdown(SHUTDOWN_TIMEOUT_MS)
        starter.join(timeout=SHUTDOWN_TIMEOUT_MS / 1000.0)
        # The shutdown returns at once; the pool then checks the connections the dispatchers
        # let go (one round trip each). Stopping the proxy under those checks makes sqlx warn.
        time.sleep(SETTLE_S + 2 * plan.rtt_nominal_ms / 1000.0)


@contextmanager
def running_runtime(
    duroxide,
    server_dsn: str,
    path_dsn: str,
    schema: str,
    plan: Plan,
    count: Counter | None = None,
) -> Iterator:
    """The runtime and a client on one provider reached through `path_dsn` (as fanout.py has
    them); yields the client and shuts the runtime down on exit."""
    if path_dsn != server_dsn:
        # Migrate straight to the server first (the provider is dropped at once), as the lab's
        # sweep.sh did: through the proxy the migrations take ~200 round trips (10 s at 50 ms).
        connect(duroxide, server_dsn, schema)
    provider = connect(duroxide, path_dsn, schema)
    with started(build_runtime(duroxide, provider, plan, count), plan):
        yield duroxide.Client(provider)
