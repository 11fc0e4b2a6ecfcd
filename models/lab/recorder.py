"""`durosim record`: run the real duroxide runtime (PyPI `duroxide` 0.2.2) against a real
PostgreSQL and write what it measured as a `durosim-trace/1` file.

It drives the lab's workload (docs/lab/fanout.py): one process runs the runtime (O orchestration
and W worker dispatchers on one PostgresProvider, whose sqlx pool has DUROXIDE_PG_POOL_MAX
connections) and a client on the same provider. Orchestration "FanOut" schedules `fanout`
activities "A" and waits for all of them; each activity sleeps `activity_ms`. Modes: sequential
(start, wait, next), closed (K client threads, each starting the next orchestration when its last
one completes) and stress (duroxide's stress test, stress-tests/src/lib.rs `run_stress_test`: a
pump keeps K in flight for `duration_s`, then a drain checks every 100 ms until none is active;
throughput = completed / total time). The first `warmup` orchestrations run one at a time first
and are marked. Latency is the client's wall clock from just before `start_orchestration` to the
return of `wait_for_orchestration`, whose polling back-off is part of it, as in the lab.

The RTT is added by `durosim.lab.delay_proxy` between the process and the server; the header's
`rtt_ms` is what the path really had, the median of 20 timed `select 1` on one open connection
through it. The server is a throwaway cluster (`durosim.lab.cluster`) unless --dsn names one.
Records are written and flushed one at a time, so an interrupted run keeps all it measured.

`--fault` (durosim.lab.faults) injects faults timed from the first orchestration's start and the
header's `conditions.faults` says what was asked and what was measured (durosim.lab.fault_injector);
with faults an orchestration that fails or times out is recorded with its status in every mode.
Every run counts its activity executions in every process (durosim.lab.executions): the header's
`activity_executions` {"total", "distinct"}.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import click

from durosim.lab import executions
from durosim.lab.cluster import ClusterError, split_cpus, throwaway_server
from durosim.lab.delay_proxy import ProxyProcess
from durosim.lab.driver import Driver, Failed, Plan, Progress, TraceWriter, first_line
from durosim.lab.fault_injector import FaultInjector
from durosim.lab.faults import check_faults, parse_fault
from durosim.lab.nodes import READY, NodeProcess, start_nodes
from durosim.lab.real_runtime import (
    check_psycopg,
    drop_schema,
    import_duroxide,
    measure_rtt_ms,
    redact,
    running_runtime,
    server_of,
    through,
    upstream,
)
from durosim.lab.server_watch import ServerWatch
from durosim.sim.errors import ExternalError, InputError, Interrupted

CALLS_RUST_LOG = "warn,duroxide_pg=debug,sqlx::query=debug,duroxide::runtime=debug"
MODES = ("sequential", "closed", "stress", "open")


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


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what the runtime writes to standard output to standard error while it runs:
    duroxide logs its warnings (a provider error under a fault, a slow acquire) to file
    descriptor 1, where they would fall into `record --json`. Python's own output is flushed
    first and goes back to standard output after."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def _affinity(cpus: list[int]) -> Iterator[None]:
    """Run this thread, and the threads and processes it starts, on `cpus`; restore after."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


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


def _call_records(log_path: Path, t0_wall: float) -> list[dict]:
    """One `call` record per provider statement in duroxide's debug log from the first
    orchestration's start on, on the trace's clock. Earlier lines are the schema's migrations
    (whose DDL names the procedures) and the dispatchers' first idle polls."""
    from durosim.evidence.ingest import IngestError, read_duroxide_log

    try:
        data = read_duroxide_log(log_path)
    except IngestError as err:
        raise ExternalError(f"--calls: {err}") from None
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
    if plan.mode == "open":
        mode = (
            f"open loop, Poisson arrivals at {plan.arrival_rate_per_s:g}/s for "
            f"{plan.duration_s:g} s (seed {plan.seed})"
        )
    else:
        mode = {
            "sequential": "one at a time",
            "closed": f"{plan.in_flight} client loops (closed)",
            "stress": f"stress test, {plan.in_flight} in flight for {plan.duration_s:g} s, "
            "then drain",
        }[plan.mode]
    if plan.nodes > 1:
        mode += f"; {plan.nodes} runtime nodes (processes), the client on the first"
    if plan.faults:
        mode += "; faults injected: " + ", ".join(f.spec for f in plan.faults)
    work = "fan-out workload of docs/lab/fanout.py"
    if plan.workload:
        work = f"the workflows of {Path(plan.workload).name} (durosim.lab.workflows)"
    text = (
        f"durosim record: duroxide {_version('duroxide')} (PyPI) + {server} ({where}), {path}; "
        f"latency = client wall clock from start_orchestration to the return of "
        f"wait_for_orchestration; {work}, {mode}; {os.cpu_count()} CPUs"
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
        raise InputError(f"--concurrency {text!r}: expected O:W with whole numbers >= 1, e.g. 2:2")
    return o, w


def _workload(name: str | None) -> str:
    """The scenario file of `--workload`, checked: it has workflows the SDK can run."""
    if not name:
        return ""
    from durosim.lab.workflows import check_recordable
    from durosim.model.scenario import load, scenario_path

    path = scenario_path(name).resolve()
    workflows = load(path).workload.workflows
    if not workflows:
        raise InputError(f"--workload {name}: the scenario has no [[workload.workflows]]")
    check_recordable(workflows)
    return str(path)


def _plan(options: dict) -> Plan:
    mode = options["mode"]
    misplaced = [
        flag
        for flag, key, modes in (
            ("--in-flight", "in_flight", ("closed", "stress")),
            ("--count", "count", ("sequential", "closed")),
            ("--duration-s", "duration_s", ("stress", "open")),
            ("--rate", "rate", ("open",)),
            ("--seed", "seed", ("open",)),
        )
        if options[key] is not None and mode not in modes
    ]
    if misplaced:
        raise InputError(f"{', '.join(misplaced)} does not apply to --mode {mode}")
    if mode == "open" and options["rate"] is None:
        raise InputError("--mode open needs --rate R, the arrivals per second (a number > 0)")
    o, w = _concurrency(options["concurrency"])
    workload = _workload(options.get("workload"))
    faults = tuple(parse_fault(spec) for spec in options.get("fault") or ())
    run_s = (options["duration_s"] or 10.0) if mode in ("stress", "open") else None
    check_faults(faults, options["nodes"], options["rtt_ms"], options["dsn"], run_s)
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
        arrival_rate_per_s=options["rate"],
        seed=1 if options["seed"] is None else options["seed"],
        wait_timeout_ms=options["wait_timeout_ms"],
        nodes=options["nodes"],
        workload=workload,
        database_cores=options.get("db_cores"),
        faults=faults,
    )


def record(options: dict) -> dict:
    """Run the real duroxide runtime against a real PostgreSQL as `options` (the command line's)
    say, write a durosim-trace/1 file of what it measured, and return what it wrote (`line`, a
    one-line summary, among it)."""
    plan = _plan(options)
    out = Path(options["out"])
    dsn = options["dsn"]
    if not out.resolve().parent.is_dir():
        raise InputError(f"--out {out}: its folder does not exist")
    if dsn is not None and urlsplit(dsn).scheme not in ("postgres", "postgresql"):
        raise InputError("--dsn: expected a URL, postgres://USER@HOST:PORT/DATABASE")
    if dsn is not None and plan.database_cores is not None:
        raise InputError("--db-cores pins the throwaway cluster; it cannot apply with --dsn")
    server_cpus = others = None
    if plan.database_cores is not None:
        try:
            server_cpus, others = split_cpus(plan.database_cores)
        except ClusterError as err:
            raise InputError(str(err)) from None
    duroxide = import_duroxide()
    check_psycopg()
    env = {"DUROXIDE_PG_POOL_MAX": str(plan.pool_size)}
    if options["calls"]:
        env["RUST_LOG"] = CALLS_RUST_LOG
    writer: TraceWriter | None = None
    with _Signals() as signals, ExitStack() as stack:
        try:
            stack.enter_context(_environment(env))
            stack.enter_context(_stdout_to_stderr())
            if others is not None:  # the runtime, its nodes and the proxy off the server's CPUs
                stack.enter_context(_affinity(others))
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="durosim-rec-")))
            counted = scratch / "activities"
            counted.mkdir()
            server = proxy = None
            if dsn is None:
                server = stack.enter_context(throwaway_server(cpus=server_cpus))
                server_dsn = server.dsn
                where = "throwaway cluster" + (
                    f", pinned to {plan.database_cores} CPU(s)" if plan.database_cores else ""
                )
            else:
                server_dsn, where = dsn, f"the database at {redact(dsn)}"
            database, server_name = server_of(server_dsn)
            path_dsn = server_dsn
            if plan.rtt_nominal_ms > 0:
                proxy = stack.enter_context(
                    ProxyProcess(*upstream(server_dsn), plan.rtt_nominal_ms)
                )
                path_dsn = through(server_dsn, proxy.host, proxy.port)
            rtt_ms = measure_rtt_ms(path_dsn)
            schema = f"durosim_{uuid.uuid4().hex[:8]}"
            if dsn is not None:
                stack.callback(drop_schema, server_dsn, schema)
            source = _source(plan, server_name, where, options["calls"])
            conditions = plan.conditions(rtt_ms, database)
            try:
                writer = TraceWriter(out, source, conditions)
            except OSError as err:
                raise InputError(f"--out {out}: cannot write ({err.strerror})") from None
            stack.callback(writer.close)
            log_path = scratch / "duroxide.log"
            if options["calls"]:
                try:
                    duroxide.init_tracing(str(log_path), log_format="json")
                except RuntimeError as err:
                    raise ExternalError(f"--calls: {first_line(err)} (once per process)") from None
            length = plan.warmup + (100 if plan.mode in ("stress", "open") else plan.count)
            watch = ServerWatch(server_dsn, plan.database_cores, options.get("server_waits", False))
            stack.callback(watch.close)
            count = executions.counter(counted, "node1")
            stack.callback(count.close)
            with (
                running_runtime(duroxide, server_dsn, path_dsn, schema, plan, count) as client,
                ExitStack() as nodes,
            ):
                running, refused = start_nodes(nodes, path_dsn, schema, plan, str(counted))
                if refused:
                    click.echo(
                        f"{len(refused)} of {plan.nodes - 1} other nodes could not connect: "
                        f"{refused[0]}",
                        err=True,
                    )
                injector = FaultInjector(
                    plan.faults,
                    server=server,
                    proxy=proxy,
                    nodes=running,
                    restart=lambda number: _fresh_node(path_dsn, schema, plan, number, counted),
                    watch=watch,
                )
                nodes.callback(injector.close)
                with Progress(length, f"recording {plan.mode}") as progress:
                    driver = Driver(client, plan, writer, progress)
                    watch.start()
                    injector.start(driver)
                    _run_interruptibly(driver, signals.ignore)
                    injector.close()  # what is still on is undone before the server is read
                    driver.header["server"] = watch.stop()
                    if refused:
                        driver.header["nodes_refused"] = len(refused)
            if options["calls"] and driver.t0_wall is not None:
                for call in _call_records(log_path, driver.t0_wall):
                    writer.write(call)
            driver.header["activity_executions"] = executions.totals(counted)
            if plan.faults:
                driver.header["conditions"] = {**conditions, "faults": injector.results}
            writer.close(driver.header)
        except KeyboardInterrupt:
            kept = writer.written if writer else 0
            raise Interrupted(
                f"interrupted; {out} keeps the {kept} records written so far"
            ) from None
        except (ClusterError, OSError) as err:
            raise ExternalError(str(err)) from None
        except Failed as err:
            kept = writer.written if writer else 0
            raise ExternalError(f"{err}; {out} keeps the {kept} records written so far") from None
        finally:
            signals.ignore()
    return {
        "out": str(out),
        "records": driver.writer.written,
        "rtt_ms": rtt_ms,
        **({"summary": driver.summary} if driver.summary else {}),
        **driver.header,
        "line": _summary_line(out, driver, rtt_ms),
    }


def _fresh_node(dsn: str, schema: str, plan: Plan, number: int, counted: Path) -> NodeProcess:
    """A new runtime node `number`, started as `start_nodes` starts one, once it is ready."""
    node = NodeProcess(dsn, schema, plan, number, str(counted))
    node.launch()
    line = node.read_first_line_or_error()
    if line != READY:
        node.stop()
        raise ExternalError(line)
    return node


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
    h = driver.header
    if "arrivals" in h:
        text += f", {h['arrivals']} arrived, {h['failed']} did not complete"
    if "activity_executions" in h:
        e = h["activity_executions"]
        text += f", {e['total']} activity executions ({e['distinct']} distinct)"
    if "cpu_busy" in h.get("server", {}):
        text += f", server CPU {h['server']['cpu_busy']:.0%} busy"
    return text
