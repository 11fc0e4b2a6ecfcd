"""Fit a scenario's parameters to measurements: the RTT, the server cost of each operation, the
pool's round trips, the activity run time and the dispatcher slots.

- RTT: a statement's `elapsed` is one round trip plus its server time. The cheapest statements
  (reads, empty fetches) have almost no server time, so the RTT is their median minus the server
  time of such a read: from a timing export when one is given, else the lab's 0.15 ms (median
  server time of reads in the RTT-50 debug log). Statements that took a second round trip (the
  first use on a connection: Parse/Describe) or came back early are left out of the median.
- Server cost per operation: the statement times minus the RTT, as a lognormal with the
  measured median and 99th percentile; a timing export's server-side mean replaces the median.
- Pool round trips: duroxide-pg's provider-call `duration_ms` (pool acquire and its ping
  included) minus the statement's `elapsed`, in RTTs (sqlx pings on acquire: about 1).
- Activity run time: the runtime's `Activity completed` durations; slots: the `orch-N`/`work-N`
  ids seen.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from durosim.evidence.ingest import (
    FETCHES,
    PROCEDURES,
    LogData,
    ProcedureTiming,
    ProviderCall,
    Statement,
    match_provider_calls,
)
from durosim.evidence.trace_format import Trace
from durosim.model.scenario import load_table
from durosim.sim.errors import InputError
from durosim.sim.stats import percentile

PROCEDURE_OPS = frozenset(PROCEDURES.values())

CHEAP_OPS = ("fetch_history", "get_custom_status")
READ_SERVER_MS = 0.15


class CalibrationError(InputError):
    """Too little in the measurements to fit what was asked."""


@dataclass(slots=True)
class OpFit:
    n: int
    p50_ms: float
    p99_ms: float
    source: str


@dataclass(slots=True)
class Fit:
    rtt_ms: float
    rtt_samples: int
    rtt_spread_ms: float
    server: dict[str, OpFit] = field(default_factory=dict)
    ping_round_trips: float | None = None
    provider_call_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    activity_ms: float | None = None
    activity_samples: int = 0
    orchestration_concurrency: int | None = None
    worker_concurrency: int | None = None
    fanout: int | None = None
    second_round_trip_share: float = 0.0
    runtime: str | None = None
    sources: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "rtt_ms": round(self.rtt_ms, 3),
            "rtt_samples": self.rtt_samples,
            "server_ms": {op: round(f.p50_ms, 3) for op, f in sorted(self.server.items())},
            "server_p99_ms": {op: round(f.p99_ms, 3) for op, f in sorted(self.server.items())},
            "ping_round_trips": None
            if self.ping_round_trips is None
            else round(self.ping_round_trips, 3),
            "activity_ms": None if self.activity_ms is None else round(self.activity_ms, 3),
            "orchestration_concurrency": self.orchestration_concurrency,
            "worker_concurrency": self.worker_concurrency,
            "fanout": self.fanout,
            "second_round_trip_share": round(self.second_round_trip_share, 4),
            "runtime": self.runtime,
            "statements": {op: f.n for op, f in sorted(self.server.items())},
            "provider_calls": {
                op: {"measured_p50_ms": round(m, 3), "predicted_ms": round(p, 3)}
                for op, (m, p) in sorted(self.provider_call_ms.items())
            },
        }


def from_trace(trace: Trace) -> LogData:
    """A trace's call records as statements (and provider calls where `call_ms` is given)."""
    data = LogData(paths=[trace.path])
    for call in trace.calls:
        op = call.op.replace(" (empty)", "")
        empty = call.op.endswith("(empty)")
        elapsed = call.end_ms - call.start_ms
        data.statements.append(Statement(op, empty, elapsed, call.end_ms / 1000.0))
        if call.call_ms is not None:
            data.provider_calls.append(
                ProviderCall(op, call.call_ms, call.end_ms / 1000.0, call.instance)
            )
    for op, cost in (trace.server or {}).get("statements", {}).items():
        if op in PROCEDURE_OPS and cost["calls"] > 0:
            data.timings[op] = ProcedureTiming(op, cost["calls"], cost["mean_ms"], None)
    data.used = len(trace.calls)
    data.lines = len(trace.calls)
    return data


def merge(parts: list[LogData]) -> LogData:
    out = LogData()
    for part in parts:
        out.paths += part.paths
        out.statements += part.statements
        out.provider_calls += part.provider_calls
        out.activities_ms += part.activities_ms
        out.activities_per_instance.update(part.activities_per_instance)
        for kind in out.slots:
            out.slots[kind] |= part.slots[kind]
        out.timings.update(part.timings)
        out.core_version = out.core_version or part.core_version
        out.lines += part.lines
        out.used += part.used
        out.skipped.update(part.skipped)
    return out


def _key(statement: Statement) -> str:
    return statement.op + ("_empty" if statement.empty else "")


def fit(data: LogData) -> Fit:
    cheap = [
        s.elapsed_ms for s in data.statements if s.op in CHEAP_OPS or (s.empty and s.op in FETCHES)
    ]
    if len(cheap) < 5:
        raise CalibrationError(
            f"{', '.join(data.paths)}: {len(cheap)} read or empty-fetch statements with an "
            "elapsed time; calibrating the RTT needs at least 5 (turn on sqlx::query=debug)"
        )
    rough = percentile(cheap, 50)
    single = [x for x in cheap if 0.5 * rough <= x <= 1.5 * rough + 0.5]
    read_server = [data.timings[op].mean_ms for op in CHEAP_OPS if op in data.timings]
    read_server_ms = sum(read_server) / len(read_server) if read_server else READ_SERVER_MS
    # The lower quartile, not the median: CPU contention on the runtime's host (its other
    # tasks, the proxy, a server on the same cores) only ever adds to a statement's elapsed
    # time, and on a busy 2-core machine it added 1-2 ms to the median statement of a run
    # against an idle `select 1` through the same path; the quartile keeps the path's own jitter.
    floor = percentile(single, 25)
    rtt = max(floor - read_server_ms, floor * 0.5)
    result = Fit(
        rtt_ms=rtt,
        rtt_samples=len(single),
        rtt_spread_ms=percentile(single, 90) - percentile(single, 10),
        sources=list(data.paths),
    )
    # a statement above this took a second round trip (Parse/Describe on a new connection)
    one_round_trip_ms = 1.5 * rtt + 1.0 + 10 * read_server_ms
    doubled = [s for s in data.statements if s.elapsed_ms > one_round_trip_ms]
    result.second_round_trip_share = len(doubled) / len(data.statements) if data.statements else 0.0
    by_key: dict[str, list[float]] = {}
    for s in data.statements:
        if s.elapsed_ms <= one_round_trip_ms:
            by_key.setdefault(_key(s), []).append(s.elapsed_ms)
    for key, values in sorted(by_key.items()):
        server = [max(v - rtt, 0.0) for v in values]
        p50 = max(percentile(server, 50), 0.01)
        p99 = max(percentile(server, 99), p50 * 1.05)
        source = f"statement elapsed minus RTT, {len(values)} statements"
        timing = data.timings.get(key)
        if timing is not None:
            p50 = max(timing.mean_ms, 0.005)
            p99 = max((timing.p95_ms or 2 * timing.mean_ms) * 1.5, p50 * 1.05)
            source = f"server-side timing export, {timing.calls} calls"
        result.server[key] = OpFit(len(values), p50, p99, source)
    for op, timing in data.timings.items():
        if op not in result.server:
            p50 = max(timing.mean_ms, 0.005)
            p99 = max((timing.p95_ms or 2 * timing.mean_ms) * 1.5, p50 * 1.05)
            result.server[op] = OpFit(
                0, p50, p99, f"server-side timing export, {timing.calls} calls"
            )
    extras = []
    calls_by_op: dict[str, list[float]] = {}
    matches = _statement_pairs(data)
    for statement, call in matches:
        extras.append(call.duration_ms - statement.elapsed_ms)
        calls_by_op.setdefault(call.op, []).append(call.duration_ms)
    if extras:
        result.ping_round_trips = percentile(extras, 50) / rtt if rtt > 0 else None
    for op, values in calls_by_op.items():
        server = result.server.get(op)
        predicted = 2 * rtt + (server.p50_ms if server else 0.0)
        result.provider_call_ms[op] = (percentile(values, 50), predicted)
    if data.activities_ms:
        result.activity_ms = sum(data.activities_ms) / len(data.activities_ms)
        result.activity_samples = len(data.activities_ms)
    if data.slots["orch"]:
        result.orchestration_concurrency = max(data.slots["orch"]) + 1
    if data.slots["work"]:
        result.worker_concurrency = max(data.slots["work"]) + 1
    if data.activities_per_instance:
        counts = sorted(data.activities_per_instance.values())
        result.fanout = counts[len(counts) // 2]
    if data.core_version:
        minor = tuple(int(x) for x in data.core_version.split(".")[:3])
        # get_custom_status joined the client's check in core 0.1.19 (738d00b); the
        # min-poll-interval idle rule in 0.1.x of 2025-12: both make today's profile.
        result.runtime = "duroxide-0.2" if minor >= (0, 1, 19) else "duroxide-2025-11"
    return result


def _statement_pairs(data: LogData) -> list[tuple[Statement, ProviderCall]]:
    timed = [s for s in data.statements if s.end_s is not None]
    matches = match_provider_calls(timed, data.provider_calls)
    by_id = {id(s): s for s in timed}
    return [(by_id[k], call) for k, call in matches.items()]


def _dist(p50_ms: float, p99_ms: float) -> str:
    return f'{{ kind = "lognormal", p50_ms = {p50_ms:.4g}, p99_ms = {p99_ms:.4g} }}'


def scenario_toml(result: Fit, base_name: str = "calibrated") -> str:
    """A scenario file whose values say where they came from; CalibrationError when the fit is
    not a scenario durosim accepts (every value passes the loader's checks)."""
    text = _scenario_text(result, base_name)
    try:
        load_table(tomllib.loads(text))
    except InputError as err:
        raise CalibrationError(
            f"{', '.join(result.sources)}: the fitted values are not a usable scenario ({err})"
        ) from None
    return text


def _scenario_text(result: Fit, base_name: str) -> str:
    sources = ", ".join(Path(p).name for p in result.sources)
    lines = [
        f"# Calibrated by `durosim calibrate` from {sources}.",
        f'name = "{base_name}"',
        'description = "calibrated from measurements"',
    ]
    if result.runtime:
        lines.append(f'runtime = "{result.runtime}"  # from the runtime version line in the log')
    lines += [
        "",
        "[network]",
        f"# median of {result.rtt_samples} read and empty-fetch statements minus a read's server "
        f"time (10-90% spread {result.rtt_spread_ms:.2f} ms)",
        f"rtt_ms = {result.rtt_ms:.4g}",
        "",
        "[database.cost]",
    ]
    for op, f in sorted(result.server.items()):
        lines.append(f"# {f.source}")
        lines.append(f"{op} = {_dist(f.p50_ms, f.p99_ms)}")
    if result.ping_round_trips is not None:
        lines += [
            "",
            "[pool]",
            f"# provider call minus statement = {result.ping_round_trips:.2f} RTT (sqlx's ping on "
            "acquire)",
            f"ping_on_acquire = {'true' if result.ping_round_trips > 0.5 else 'false'}",
        ]
    options = []
    if result.orchestration_concurrency:
        options.append(f"orchestration_concurrency = {result.orchestration_concurrency}")
    if result.worker_concurrency:
        options.append(f"worker_concurrency = {result.worker_concurrency}")
    if options:
        lines += ["", "[runtime_options]", "# from the orch-N and work-N slot ids in the log"]
        lines += options
    workload = []
    if result.fanout:
        workload.append(f"fanout = {result.fanout}  # median activities per instance")
    if result.activity_ms is not None:
        workload.append(
            f"activity_ms = {result.activity_ms:.4g}  # mean of {result.activity_samples} "
            "'Activity completed' durations"
        )
    if workload:
        lines += ["", "[workload]"] + workload
    return "\n".join(lines) + "\n"
