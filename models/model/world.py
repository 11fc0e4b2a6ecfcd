"""The one place that wires a scenario into a simulation: link, server, pool, provider, runtime,
client and workload, each with its own random stream; then runs one replication to its end."""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from durosim.evidence.trace_format import read_trace
from durosim.model.breakdown import PARTS, Path
from durosim.model.client import Client
from durosim.model.faults import Fault
from durosim.model.program import Program, compile_workflows
from durosim.model.provider import PostgresProvider, caller_kind
from durosim.model.queues import CallLog, Instance
from durosim.model.runtime import Runtime
from durosim.model.scenario import Scenario
from durosim.model.workflows import Step, Workflow
from durosim.model.workload import Driver
from durosim.sim.config import ConfigError
from durosim.sim.db import DbClient, PoolBehaviour
from durosim.sim.faults import LinkFaults, LinkWindow, Outages
from durosim.sim.kernel import Environment
from durosim.sim.network import Link
from durosim.sim.pool import ConnectionLimit, Pool
from durosim.sim.rng import Streams
from durosim.sim.server import DbServer, SharedServer


@dataclass(slots=True)
class RunResult:
    """One replication, reduced to what statistics need (orchestration records kept small)."""

    latencies_s: Sequence[float]
    """The measured latencies, packed (`array('d')`: 8 bytes each, for an hour of traffic)."""
    breakdown_s: dict[str, float]
    turns_per_orchestration: float
    calls: dict[str, int]
    measured: int
    completed: int
    failed: int
    throughput_per_s: float
    total_s: float | None
    pool_in_use_mean: float
    pool_waiting_mean: float
    pool_waiting_by_caller: dict[str, float]
    """Callers waiting for a connection on average, by kind (client, orchestration slots,
    worker slots), all nodes' pools together."""
    window_s: float
    """The measured window: from the first measured start to the last measured end."""
    latencies_by_workflow_s: dict[str, list[float]]
    """The measured latencies by the workflow each orchestration ran."""
    arrivals_per_s: float
    """Open loop with Poisson arrivals: the rate that really arrived after the warm-up."""
    server_utilisation: float
    events: int
    records: list[dict] = field(default_factory=list)
    orchestrator_queue_mean: float = 0.0
    worker_queue_mean: float = 0.0
    orchestration_slot_utilisation: float = 0.0
    worker_slot_utilisation: float = 0.0
    connections_open: int = 0
    stopped_early_s: float | None = None
    """When `doomed` ended the run early: the simulated time it stopped at."""
    pool_timed_out: int = 0
    """Provider calls whose pool timed out (no permit within the acquire timeout, or the server
    refused a new connection until then), every attempt counted, over the whole run."""
    permit_timed_out: int = 0
    """Of those, the calls still queued for a permit at their deadline."""
    advisory_waiting: float = 0.0
    """Fetches waiting on an instance's advisory lock, on average over the window."""
    failed_statements: int = 0
    """Statements that reached a server that was down or had restarted, every attempt."""
    activity_reruns: int = 0
    """Activities run again because their first run was never acknowledged."""
    orchestrations: list[tuple[float, float | None, bool]] = field(default_factory=list)
    """With faults: every orchestration's (start, end, failed), for results over time."""
    dispatcher_errors: int = 0
    """Retryable provider errors the dispatchers backed off from, over the whole run."""

    @property
    def calls_per_s(self) -> dict[str, float]:
        """Provider calls per second in the measured window: `busy` ones that found or wrote
        something, `idle` ones (empty fetches), and the `total`."""
        if self.window_s <= 0:
            return {"busy": 0.0, "idle": 0.0, "total": 0.0}
        idle = sum(n for op, n in self.calls.items() if op.endswith("(empty)"))
        total = sum(self.calls.values())
        return {
            "busy": (total - idle) / self.window_s,
            "idle": idle / self.window_s,
            "total": total / self.window_s,
        }

    @property
    def calls_per_orchestration(self) -> dict[str, float]:
        n = self.measured or 1
        return {op: count / n for op, count in sorted(self.calls.items())}


@dataclass(frozen=True, slots=True)
class Doomed:
    """When an objective is missed whatever the rest of a run does: at the first orchestration
    that fails, or (with `late`) once `late` measured orchestrations have taken longer than
    `limit_s`. The caller picks `late` so that this many slow ones miss its percentile."""

    limit_s: float
    late: int | None = None


class _Collector:
    def __init__(self, keep_records: bool, by_workflow: bool, on_done=None):
        self.on_done = on_done
        self.latencies = array("d")  # 8 bytes a latency, not a float object and a slot
        self.by_workflow: dict[str, list[float]] = {}
        self.split = by_workflow  # latencies by workflow too (only a scenario's workflows)
        self.parts = [0.0] * len(PARTS)
        self.turns = 0
        self.records: list[dict] | None = [] if keep_records else None
        self.runs: list[tuple[float, float | None, bool]] | None = None

    def done(self, instance: Instance, end: float, path: Path | None) -> None:
        if self.on_done is not None:
            self.on_done()
        if self.runs is not None:
            self.runs.append((instance.started, end, path is None))
        if self.records is not None:
            self.records.append(
                {
                    "type": "orchestration",
                    "instance": instance.name,
                    "start_ms": round(instance.started * 1000.0, 3),
                    "end_ms": round(end * 1000.0, 3),
                    "warmup": not instance.measured,
                    "workflow": instance.program.name,
                    **({} if path is not None else {"status": _status(instance)}),
                }
            )
        if not instance.measured or path is None:
            return
        latency = end - instance.started
        self.latencies.append(latency)
        if self.split:
            self.by_workflow.setdefault(instance.program.name, []).append(latency)
        for i, part in enumerate(path):
            self.parts[i] += part
        self.turns += instance.turns


def _outages(faults: tuple[Fault, ...]) -> Outages | None:
    windows = [(f.start_s, f.end_s, f.connect == "refused") for f in faults if f.kind == "database"]
    return Outages(windows) if windows else None


def _link_faults(faults: tuple[Fault, ...], node: int, streams: Streams) -> LinkFaults | None:
    """Node `node`'s (0 is the first) link fault windows, or None."""
    windows = [
        LinkWindow(f.start_s, f.end_s, f.added_s, f.loss_pct / 100.0)
        for f in faults
        if f.kind == "link" and (f.node is None or f.node == node + 1)
    ]
    if not windows:
        return None
    draw = streams[f"faults.loss.node{node}"]
    return LinkFaults(windows, draw.random)


def _crash(env: Environment, fault: Fault, live: list, runtimes: list, pools: list, start_node):
    """A node crashes at the fault's start (its calls from then on fail, its slots stop) and,
    with a duration, a fresh node takes its place at the end."""
    index = fault.node - 1
    yield env.timeout(fault.start_s)
    live[index].provider.db.dead = True
    if fault.duration_s is None:
        return
    yield env.timeout(fault.duration_s)
    pool, runtime, _client = start_node(index, f"network.rtt.restart{index}")
    live[index] = runtime
    runtimes.append(runtime)
    pools.append(pool)


def _status(instance: Instance) -> str:
    return "Failed" if instance.failed else "timeout"


_CountingEnvironment = Environment
"""The environment `durosim bench` counts events with: every `Environment` counts them."""


@functools.cache
def _replayed_arrivals(path: str) -> tuple[float, ...]:
    """A trace's start times in seconds from its first, read once for all replications."""
    starts = sorted(o.start_ms for o in read_trace(path).orchestrations)
    return tuple((t - starts[0]) / 1000.0 for t in starts)


def arrival_times(scenario: Scenario, streams: Streams) -> Sequence[float] | None:
    """Open mode: Poisson arrivals for `duration_s`, or a trace's start times replayed; packed
    (`array('d')`), since all of a run's are drawn before it starts."""
    workload = scenario.workload
    if workload.mode != "open":
        return None
    if workload.arrival_trace:
        return array("d", _replayed_arrivals(workload.arrival_trace))
    rng = streams["workload.arrivals"]
    times, t = array("d"), 0.0
    while True:
        t += rng.exponential(1.0 / workload.arrival_rate_per_s)
        if t >= workload.duration_s:
            return times
        times.append(t)


@functools.cache
def _replayed_workflows(path: str) -> tuple[str, ...]:
    """The workflow of each of a trace's orchestrations, in the order they started."""
    return tuple(
        o.workflow for o in sorted(read_trace(path).orchestrations, key=lambda o: o.start_ms)
    )


def _started_programs(scenario: Scenario, streams: Streams, activity) -> list[Program]:
    """The workflows clients start: the scenario's weighted ones, or today's fan-out of
    `fanout` activities drawn from the `workload.activity` stream."""
    w = scenario.workload
    if not w.workflows:
        fanout = Workflow("fanout", (Step("fanout", duration=w.activity, n=w.fanout),), 1.0)
        return [Program(fanout, lambda dist, name: activity)]
    programs = compile_workflows(
        w.workflows, lambda dist, name: dist.sampler(streams[f"workflow.{name}"])
    )
    return [p for p in programs.values() if p.weight is not None]


def _sequence(scenario: Scenario, programs: list[Program]) -> list[Program] | None:
    if not scenario.workload.workflow_trace:
        return None
    by_name = {p.name: p for p in programs}
    names = _replayed_workflows(scenario.workload.workflow_trace)
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise ConfigError(
            f"{scenario.workload.workflow_trace}: workflows {', '.join(unknown)} are not among "
            f"the scenario's started ones ({', '.join(by_name)})"
        )
    return [by_name[n] for n in names]


def _waiting_by_caller(pools: list[Pool], end: float) -> dict[str, float]:
    """Callers waiting for a connection on average, by kind of caller, all pools together."""
    out: dict[str, float] = {}
    for pool in pools:
        for actor, level in pool.queue_by_caller.items():
            kind = caller_kind(actor)
            out[kind] = out.get(kind, 0.0) + level.mean(end)
    return dict(sorted(out.items()))


def simulate(
    scenario: Scenario,
    replication: int = 0,
    keep_records: bool = False,
    on_done: Callable[[], None] | None = None,
    doomed: Doomed | None = None,
) -> RunResult:
    """One replication of `scenario`. `keep_records` keeps a record per orchestration and per
    provider call (for traces and timelines; otherwise nothing per orchestration is kept but its
    latency); `on_done` is called as each orchestration ends (for progress). With `doomed`, the
    run stops as soon as its objective is certainly missed (`stopped_early_s` says when)."""
    env = Environment()
    streams = Streams(scenario.seed, replication)
    profile = scenario.profile
    design = scenario.design
    options = scenario.runtime_options
    database = scenario.database
    if database.scheduling == "shared":
        server = SharedServer(env, database.cores, database.cost, streams["database.cost"])
    else:
        server = DbServer(database.cores, database.cost, streams["database.cost"])
    limit = ConnectionLimit(scenario.database.max_connections)
    behaviour = PoolBehaviour(
        # pipelining sends the ping with the statement: it costs no round trip of its own
        ping_on_acquire=scenario.pool.ping_on_acquire and not design.pipelining,
        ping_on_release=scenario.pool.ping_on_release,
        connect_round_trips=scenario.pool.connect_round_trips,
        prepare_round_trip=scenario.pool.prepare_round_trip,
    )
    log = CallLog(keep_records)
    activity = scenario.workload.activity.sampler(streams["workload.activity"])
    pools, clients, runtimes = [], [], []
    faults = scenario.faults
    outages = _outages(faults)
    primary: PostgresProvider | None = None

    at_start: dict[str, float] = {}  # what the counters said when the measured window began

    def start_node(node: int, rtt_stream: str) -> tuple[Pool, Runtime, Client]:
        """Node `node` (0 is the first): its link, pool, provider, slots and client."""
        link = Link(scenario.network.rtt, streams[rtt_stream])
        pool = Pool(env, scenario.pool.size, scenario.pool.min_connections, limit)
        if at_start:  # a node started in the measured window (a restart) averages over it all
            pool.reset(at_start["time"])
        crashes = any(f.kind == "node" and f.node == node + 1 for f in faults)
        db = DbClient(
            env, link, pool, server, behaviour, scenario.call_overhead_s,
            outages, _link_faults(faults, node, streams), crashes,
        )  # fmt: skip
        provider = PostgresProvider(
            env,
            db,
            log,
            profile.fetch_contention,
            scenario.database.deadlock_timeout_s,
            scenario.database.deadlock_window_s,
            notify=design.long_poll,
            stored_procedures=design.stored_procedures,
            shared=primary,
        )
        runtime = Runtime(
            env,
            provider,
            profile,
            options.orchestration_concurrency,
            options.worker_concurrency,
            options.dispatcher_poll_interval_s,
            streams["workload.choices"],
            design,
            (options.orchestrator_lock_timeout_s, options.worker_lock_timeout_s),
        )
        client = Client(
            env,
            provider,
            profile.client_check,
            scenario.client.initial_poll_delay_s,
            scenario.client.max_poll_delay_s,
            pipelined=design.pipelining,
            notified_over=link if design.client_notified else None,
        )
        return pool, runtime, client

    for node in range(scenario.host.nodes):
        pool, runtime, client = start_node(node, "network.rtt" + (f".node{node}" if node else ""))
        primary = primary or runtime.provider
        runtimes.append(runtime)
        clients.append(client)
        pools.append(pool)
    live = list(runtimes)  # each node's runtime now; a restarted node's replaces the crashed one
    for fault in faults:
        if fault.kind == "node":
            env.process(_crash(env, fault, live, runtimes, pools, start_node))
    # the slots' busy time sums over every node that has run, a restarted node's replacement
    # included; their utilisation is over the slots of the deployment (a node's at a time)
    orchestration_slots = sum(len(r.orchestrators) for r in runtimes)
    worker_slots = sum(len(r.workers) for r in runtimes)

    def busy(kind: str) -> float:
        return sum(d.busy_s for r in runtimes for d in getattr(r, kind))

    queues = (primary.orchestrator_queue.depth, primary.worker_queue.depth)
    collector = _Collector(keep_records, bool(scenario.workload.workflows), on_done)
    if faults:
        collector.runs = []
    at_end: dict[str, float] = {}  # what they said when it last ended (it moves in open mode)

    def measure_end() -> None:
        at_end["server"] = server.busy_until(env.now)

    def measure_start() -> None:
        for level in queues:
            level.reset(env.now)
        for pool in pools:
            pool.reset(env.now)
        at_start.update(
            time=env.now,
            server=server.busy_until(env.now),
            advisory=sum(r.provider.advisory_wait_s for r in runtimes),
            orchestrators=busy("orchestrators"),
            workers=busy("workers"),
        )

    programs = _started_programs(scenario, streams, activity)
    driver = Driver(
        env, clients[: scenario.host.client_nodes or len(clients)], log, scenario.workload,
        collector.done, measure_start, arrival_times(scenario, streams),
        programs, streams["workload.mix"], _sequence(scenario, programs),
    )  # fmt: skip
    driver.on_window_end = measure_end
    finished = env.process(driver.run())
    stopped: list[float] = []
    if doomed is not None:
        late = [0]
        stop = env.event()
        counted = collector.done

        def watch(instance: Instance, end: float, path: Path | None) -> None:
            counted(instance, end, path)
            if path is None:
                late[0] = doomed.late or 1  # a failure misses the objective
            elif instance.measured and end - instance.started > doomed.limit_s:
                late[0] += 1
            if doomed.late is not None and late[0] >= doomed.late or path is None:
                if not stop.triggered:
                    stopped.append(env.now)
                    stop.succeed()

        driver.on_done = watch
        env.run(until=env.any_of([finished, stop]))
    else:
        env.run(until=finished)

    start = driver.window_start_s or 0.0
    end = driver.window_end_s if driver.window_end_s is not None else env.now
    window = end - start
    measured = len(collector.latencies)
    arrivals_per_s = 0.0
    if scenario.workload.mode == "stress":
        throughput = driver.completed / driver.total_s if driver.total_s else 0.0
    elif scenario.workload.mode == "open" and not scenario.workload.arrival_trace:
        # completions while orchestrations arrive, after the warm-up: at overload this stays
        # at what the system serves, whatever the drain finishes later
        span = scenario.workload.duration_s - scenario.workload.warmup_s
        throughput = driver.completed_in_window / span if span > 0 else math.nan
        arrivals_per_s = driver.arrived_in_window / span if span > 0 else 0.0
    else:
        throughput = measured / window if window > 0 else math.nan

    def utilisation(busy: float, servers: int) -> float:
        return busy / (servers * window) if window > 0 else 0.0

    records = []
    if keep_records:
        records = sorted(
            (collector.records or []) + (log.records or []), key=lambda r: r["start_ms"]
        )
    return RunResult(
        latencies_s=collector.latencies,
        latencies_by_workflow_s=collector.by_workflow,
        breakdown_s={p: v / measured for p, v in zip(PARTS, collector.parts)} if measured else {},
        turns_per_orchestration=collector.turns / measured if measured else math.nan,
        calls=dict(log.counts),
        measured=measured,
        completed=driver.completed,
        failed=driver.failed,
        throughput_per_s=throughput,
        total_s=driver.total_s,
        # a node's pool at a time: a restarted node's replaces the crashed one's
        pool_in_use_mean=sum(p.occupancy.mean(end) for p in pools) / scenario.host.nodes,
        pool_waiting_mean=sum(p.queue_mean(end) for p in pools),
        pool_waiting_by_caller=_waiting_by_caller(pools, end),
        window_s=window,
        arrivals_per_s=arrivals_per_s,
        server_utilisation=utilisation(
            at_end.get("server", server.busy_until(env.now)) - at_start.get("server", 0.0),
            server.cores,
        ),
        events=env.events,
        records=records,
        orchestrator_queue_mean=queues[0].mean(end),
        worker_queue_mean=queues[1].mean(end),
        orchestration_slot_utilisation=min(1.0, utilisation(
            busy("orchestrators") - at_start.get("orchestrators", 0.0), orchestration_slots)),
        worker_slot_utilisation=min(1.0, utilisation(
            busy("workers") - at_start.get("workers", 0.0), worker_slots)),
        connections_open=limit.open,
        stopped_early_s=stopped[0] if stopped else None,
        pool_timed_out=sum(r.provider.timed_out for r in runtimes),
        permit_timed_out=sum(p.timed_out for p in pools),
        advisory_waiting=utilisation(
            sum(r.provider.advisory_wait_s for r in runtimes) - at_start.get("advisory", 0.0), 1),
        dispatcher_errors=sum(d.errors for r in runtimes for d in r.orchestrators + r.workers),
        failed_statements=sum(r.provider.failed_statements for r in runtimes),
        activity_reruns=sum(r.provider.repeated for r in runtimes),
        orchestrations=collector.runs or [],
    )  # fmt: skip
