"""A scenario: everything one simulated run needs, as frozen dataclasses.

Defaults are duroxide's real defaults (RuntimeOptions in dx-cur `src/runtime/mod.rs:155-372`,
the duroxide-pg pool in pg-cur `src/provider.rs:126-136`, sqlx 0.8 pool options) and server
costs measured from the lab's RTT-50 debug log. A scenario file sets what differs; `--set`
changes one value. Defaults live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Literal

from durosim.model.faults import Fault, Recovery, check_faults
from durosim.model.profiles import PROFILES, RuntimeName, RuntimeProfile
from durosim.model.workflows import Workflow, check_workflows
from durosim.sim.config import ConfigError, apply_overrides, from_table, read_toml
from durosim.sim.dist import Const, Dist, LogNormal

# duroxide-pg's stored procedures, by the name of the provider method that calls each.
OPERATIONS = (
    "fetch_orchestration_item",
    "ack_orchestration_item",
    "fetch_work_item",
    "ack_work_item",
    "enqueue_orchestrator_work",
    "fetch_history",
    "get_custom_status",
)
# Server-cost keys: the operations, the empty fetches, which cost less, and a connection.
COST_KEYS = OPERATIONS + (
    "fetch_orchestration_item_empty",
    "fetch_work_item_empty",
    "orchestration_turn",  # a whole turn inside the database (the server_side_turns what-if)
    "connect",  # a connection opened: a backend forked, authenticated and initialised
    "connect_refused",  # a connection refused at max_connections: a backend forked and gone
)
# A connection's server CPU on PostgreSQL 15.18, one core, trust authentication
# (`python -m durosim.lab.connect_cost 1000`, twice on this project's machine: 3.75 and 3.79 ms
# opened, 2.75 and 2.88 ms refused; docs/reference/duroxide-runtime.md, "Connections").
CONNECT_MS = 3.8
CONNECT_REFUSED_MS = 2.8


def _default_cost() -> dict[str, Dist]:
    # Statement `elapsed` minus the measured `select 1` RTT (50.76 ms) in the lab's RTT-50 debug
    # log, statements with an extra Parse/Describe round trip left out: median and 99th
    # percentile per operation (traces/logs/duroxide-0.2.2-pg15-rtt50.jsonl). They hold
    # the server's work and the client's decoding; the p99 also holds the lab's RTT jitter.
    p50_p99_ms = {
        "fetch_orchestration_item": (1.9, 6.0),
        "ack_orchestration_item": (1.1, 4.0),
        "fetch_work_item": (0.8, 3.9),
        "ack_work_item": (0.75, 4.6),
        "enqueue_orchestrator_work": (0.4, 2.0),
        "fetch_history": (0.2, 2.3),
        "get_custom_status": (0.15, 2.4),
        "fetch_orchestration_item_empty": (0.2, 4.3),
        "fetch_work_item_empty": (0.2, 3.7),
        # not measured: a fetch and an ack in one procedure
        "orchestration_turn": (3.0, 10.0),
    }
    cost: dict[str, Dist] = {
        op: LogNormal(p50 / 1000.0, p99 / 1000.0) for op, (p50, p99) in p50_p99_ms.items()
    }
    cost["connect"] = Const(CONNECT_MS / 1000.0)
    cost["connect_refused"] = Const(CONNECT_REFUSED_MS / 1000.0)
    return cost


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"must be >= 1, got {value}"


def _optional_at_least_one(value: int | None) -> str | None:
    return None if value is None else _at_least_one(value)


def _optional_not_negative(value: float | None) -> str | None:
    return None if value is None else _not_negative(value)


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def _arrival_trace(path: str) -> str | None:
    """An arrival trace must be a readable trace with orchestration records."""
    if not path:
        return None
    from durosim.evidence.trace_format import TraceError, read_trace

    try:
        trace = read_trace(path)
    except TraceError as err:
        return str(err)
    if not trace.orchestrations:
        return f"{path}: no orchestration records to take arrival times from"
    return None


def _workflow_trace(path: str) -> str | None:
    """A workflow trace must be a readable trace whose orchestration records name workflows."""
    problem = _arrival_trace(path)
    if problem or not path:
        return problem
    from durosim.evidence.trace_format import read_trace

    if not all(o.workflow for o in read_trace(path).orchestrations):
        return f"{path}: an orchestration record without its 'workflow'"
    return None


SCHEDULING = ("fcfs", "shared")


def _scheduling(value: str) -> str | None:
    if value in SCHEDULING:
        return None
    return f"must be one of {', '.join(SCHEDULING)}, got {value!r}"


def _known_costs(value: dict) -> str | None:
    unknown = sorted(set(value) - set(COST_KEYS))
    if unknown:
        return f"unknown operation(s) {', '.join(unknown)}; known: {', '.join(COST_KEYS)}"
    return None


@dataclass(frozen=True, slots=True)
class Network:
    """The path between the runtime host (dispatchers and client) and the database."""

    rtt: Dist = Const(0.0005)


@dataclass(frozen=True, slots=True)
class Database:
    cores: int = field(default=4, metadata={"check": _at_least_one})
    cost: dict[str, Dist] = field(default_factory=_default_cost, metadata={"check": _known_costs})
    scheduling: str = field(default="fcfs", metadata={"check": _scheduling})
    """How the cores are shared among the statements on the server: "fcfs", first come, first
    served (a statement waits for a free core, then has it alone), or "shared", every statement
    progresses at once at min(1, cores/n) of a core, as Linux shares a CPU among runnable
    backends (on a saturated core a long statement is stretched while short ones pass)."""
    max_connections: int = field(default=100, metadata={"check": _at_least_one})
    """PostgreSQL's `max_connections` (default 100): a hard limit on all pools together; a pool
    that cannot open a connection waits for one of its own (sqlx would see an error and duroxide
    retry after its back-off)."""
    deadlock_timeout_s: float = field(default=1.0, metadata={"check": _positive})
    """PostgreSQL's `deadlock_timeout` (default 1 s): matters only for duroxide-2025-11."""
    deadlock_window_s: float = field(default=0.00075, metadata={"check": _not_negative})
    """duroxide-2025-11 only: how long after a fetch reaches the server its update has not yet
    locked every message row of the instance it chose (step 1 to step 3 of the seed's
    procedure); a second fetch reaching the server within it deadlocks with it. Calibrated: about
    half the fetch's server time, the value at which the local-docker 2:2 and 4:4 rows both fit
    (it does not move the remote rows)."""

    def __post_init__(self) -> None:
        merged = _default_cost()
        merged.update(self.cost)
        object.__setattr__(self, "cost", merged)


@dataclass(frozen=True, slots=True)
class Pool:
    """duroxide-pg's sqlx pool: `DUROXIDE_PG_POOL_MAX` (10), `min_connections(1)`, sqlx defaults."""

    size: int = field(default=10, metadata={"check": _at_least_one})
    min_connections: int = field(default=1, metadata={"check": _not_negative})
    ping_on_acquire: bool = True
    """sqlx `test_before_acquire` (default true): an idle connection is pinged before use."""
    ping_on_release: bool = True
    """sqlx pings a returned connection before it is idle again (`return_to_pool`)."""
    connect_round_trips: int = field(default=3, metadata={"check": _not_negative})
    """Opening a connection: TCP, SSLRequest (sslmode=prefer), startup with trust auth."""
    prepare_round_trip: bool = True
    """The first use of a statement on a connection costs a Parse/Describe round trip."""

    def __post_init__(self) -> None:
        if self.min_connections > self.size:
            raise ConfigError(
                f"min_connections ({self.min_connections}) must be <= size ({self.size})"
            )


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """duroxide `RuntimeOptions`, with the Python SDK's keyword names."""

    orchestration_concurrency: int = field(default=2, metadata={"check": _at_least_one})
    worker_concurrency: int = field(default=2, metadata={"check": _at_least_one})
    dispatcher_poll_interval_s: float = field(default=0.1, metadata={"check": _not_negative})
    orchestrator_lock_timeout_s: float = field(default=5.0, metadata={"check": _positive})
    """How long a fetched instance stays locked if its turn is never acknowledged."""
    worker_lock_timeout_s: float = field(default=30.0, metadata={"check": _positive})
    """How long a fetched work item stays locked if its activity is never acknowledged."""


@dataclass(frozen=True, slots=True)
class Host:
    """The runtime's hosts: `nodes` runtimes, each with its own dispatchers and pool, against one
    database; the client load is spread in turn over the first `client_nodes` of them (each
    client on its node's provider and pool, as `Client::new(provider)` shares it)."""

    nodes: int = field(default=1, metadata={"check": _at_least_one})
    client_nodes: int | None = field(default=None, metadata={"check": _optional_at_least_one})
    """Nodes that run clients; unset: every node. `durosim record --nodes` puts them on one."""

    call_overhead_s: float | None = field(default=None, metadata={"check": _optional_not_negative})
    """Client-side time per provider call; unset means the runtime profile's calibrated value."""

    def __post_init__(self) -> None:
        if self.client_nodes is not None and self.client_nodes > self.nodes:
            raise ConfigError(f"client_nodes ({self.client_nodes}) must be <= nodes ({self.nodes})")


@dataclass(frozen=True, slots=True)
class Client:
    """`wait_for_orchestration`'s back-off (dx-cur `client/mod.rs:92-98`): 5 ms doubling to 100."""

    initial_poll_delay_s: float = field(default=0.005, metadata={"check": _not_negative})
    max_poll_delay_s: float = field(default=0.1, metadata={"check": _not_negative})


@dataclass(frozen=True, slots=True)
class Design:
    """How the runtime and the provider work. The defaults are duroxide 0.2's; each other value
    is a design that does not exist in it, for what-ifs (see `models/model/whatif.py`)."""

    worker_batch_size: int = field(default=1, metadata={"check": _at_least_one})
    """Work items one worker fetch takes and one ack returns (duroxide PR 17, duroxide-pg PR 7)."""
    long_poll: bool = False
    """LISTEN/NOTIFY wake-ups as duroxide-pg-opt built them: an empty fetch waits for a notify
    (or `long_poll_timeout`), and every notify wakes every waiting fetcher."""
    long_poll_timeout_s: float = field(default=30.0, metadata={"check": _positive})
    client_notified: bool = False
    """The client is told of the completion (one message one way) instead of polling."""
    activity_context_read: bool = True
    """The worker reads the orchestration's history before each activity (duroxide 0.2 does)."""
    pipelining: bool = False
    """Independent statements share round trips: the pool's ping goes with the statement, the
    client's two status calls go together, and a slot's ack carries its next fetch."""
    server_side_turns: bool = False
    """An orchestration turn runs inside the database: one call instead of fetch + ack."""
    stored_procedures: bool = True
    """False: the provider before its stored procedures (an orchestration fetch of 7 statements,
    an ack of 8 plus one insert per history event; the other calls stay at one), each statement a
    round trip on the same connection."""


@dataclass(frozen=True, slots=True)
class Workload:
    """Fan-out/fan-in orchestrations: schedule `fanout` activities at once and wait for all."""

    fanout: int = field(default=5, metadata={"check": _at_least_one})
    activity: Dist = Const(0.0)
    mode: Literal["sequential", "closed", "stress", "open"] = "sequential"
    in_flight: int = field(default=1, metadata={"check": _at_least_one})
    count: int = field(default=20, metadata={"check": _at_least_one})
    """Measured orchestrations (sequential and closed modes)."""
    warmup: int = field(default=3, metadata={"check": _not_negative})
    """Orchestrations run first and left out of the statistics (sequential and closed modes)."""
    duration_s: float = field(default=10.0, metadata={"check": _positive})
    """Stress mode: how long the pump keeps `in_flight` running before the drain. Open mode: how
    long orchestrations arrive."""
    arrival_rate_per_s: float = field(default=1.0, metadata={"check": _positive})
    """Open mode: Poisson arrivals at this rate."""
    arrival_trace: str = field(default="", metadata={"check": _arrival_trace})
    """Open mode: replay the start times of this trace's orchestrations instead."""
    warmup_s: float = field(default=0.0, metadata={"check": _not_negative})
    """Open mode: orchestrations that arrive before this are left out of the statistics."""
    wait_timeout_s: float = field(default=60.0, metadata={"check": _positive})
    workflows: tuple[Workflow, ...] = field(default=(), metadata={"check": check_workflows})
    """The workflows and their mix (`durosim.model.workflows`); none: the fan-out above."""
    workflow_trace: str = field(default="", metadata={"check": _workflow_trace})
    """Start the workflow each orchestration of this trace ran, in the order they started,
    instead of drawing from the mix (validate replays a recorded mix this way)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "scenario"
    description: str = ""
    runtime: RuntimeName = "duroxide-0.2"
    seed: int = field(default=1, metadata={"check": _not_negative})
    replications: int = field(default=5, metadata={"check": _at_least_one})
    network: Network = field(default_factory=Network)
    database: Database = field(default_factory=Database)
    pool: Pool = field(default_factory=Pool)
    runtime_options: RuntimeOptions = field(default_factory=RuntimeOptions)
    host: Host = field(default_factory=Host)
    client: Client = field(default_factory=Client)
    design: Design = field(default_factory=Design)
    workload: Workload = field(default_factory=Workload)
    recovery: Recovery = field(default_factory=Recovery)
    faults: tuple[Fault, ...] = ()
    """`[[faults]]`: the database down, a link held or slowed, a node crashed, each a window of
    the run (`durosim.model.faults`)."""

    def __post_init__(self) -> None:
        if self.faults:
            w = self.workload
            check_faults(
                self.faults,
                self.host.nodes,
                self.host.client_nodes or self.host.nodes,
                w.duration_s if w.mode in ("open", "stress") else None,
            )

    @property
    def profile(self) -> RuntimeProfile:
        return PROFILES[self.runtime]

    @property
    def call_overhead_s(self) -> float:
        if self.host.call_overhead_s is not None:
            return self.host.call_overhead_s
        return self.profile.call_overhead_s


def load_table(table: dict, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    return from_table(Scenario, apply_overrides(table, list(overrides)))


def shipped() -> dict[str, Path]:
    """The scenarios installed with durosim (package data `durosim.configs`), by name."""
    folder = files("durosim.configs")
    return {
        entry.name.removesuffix(".toml"): Path(str(entry))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    }


def scenario_path(name_or_path: str | Path) -> Path:
    """A scenario file: the path when it names a file, else the shipped scenario of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    found = shipped()
    name = str(name_or_path).removesuffix(".toml")
    if name in found and path.parent == Path("."):
        return found[name]
    if path.exists():
        read_toml(path)  # says why it is not a file that can be read
        raise ConfigError(f"{path}: is not a regular file, expected a .toml file")
    raise ConfigError(
        f"{name_or_path}: no such file or shipped scenario; shipped: {', '.join(found)}"
    )


# Scenario keys that hold a file path: a relative one is relative to the scenario file.
PATH_KEYS = (("workload", "arrival_trace"), ("workload", "workflow_trace"))


def read_table(name_or_path: str | Path) -> dict:
    """A scenario file's table (a path, or a shipped scenario's name), with relative paths inside
    it resolved against the file's folder."""
    path = scenario_path(name_or_path)
    table = read_toml(path)
    for section, key in PATH_KEYS:
        node = table.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and node[key]:
            value = Path(node[key]).expanduser()
            if not value.is_absolute():
                node[key] = str(path.resolve().parent / value)
    return table


def load(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read a scenario (a file, or a shipped scenario by name), apply `--set` overrides, and
    check everything."""
    table = read_table(name_or_path)
    try:
        return load_table(table, overrides)
    except ConfigError as err:
        raise ConfigError(f"{name_or_path}: {err}") from None
