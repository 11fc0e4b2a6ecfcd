"""The `durosim-trace/1` format: JSON Lines, a header then records.

    {"format": "durosim-trace/1", "source": "...", "conditions": {...}}
    {"type": "orchestration", "instance": "i-1", "start_ms": 0.0, "end_ms": 1463.0, "warmup": false}
    {"type": "orchestration", "instance": "i-2", "start_ms": 9.0, "end_ms": 120009.0,
     "warmup": false, "status": "client error: timeout"}
    {"type": "summary", "completed": 20, "throughput_per_s": 0.36, "total_s": 55.56}
    {"type": "call", "op": "fetch_work_item", "instance": "i-1", "start_ms": 10.0, "end_ms": 112.0}

An orchestration record with a `status` other than "Completed" (or empty) did not complete (it
failed or its client's wait timed out); its `end_ms` is when the client gave up. Beside
`conditions` the header may say how many orchestrations `arrivals` started and how many `failed`
(open loop), and `server` what the database spent while it ran (`durosim record`:
`cpu_busy`, its CPU seconds over the window and its cores; `statements`, each stored procedure's
`calls` and `mean_ms` from pg_stat_statements; `waits`, where its backends were), and
`activity_executions` the activities run, {"total", "distinct"} (distinct (instance, activity)
pairs). A recording with faults (`durosim record --fault`) lists them in `conditions.faults`:
{"kind": "database" | "link" | "node", "start_s", "duration_s" (null: a crash with no restart),
"node"}, seconds from the first orchestration's start, with `applied_s` and `ended_s` as measured.
Unknown keys and record types are kept and ignored, so the format can grow. The simulator writes
its own traces in the same format, so nothing downstream can tell simulated from measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from durosim.sim.errors import InputError, read_input

FORMAT = "durosim-trace/1"


class TraceError(InputError):
    """A trace that cannot be read; the message names the file, the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class Orchestration:
    instance: str
    start_ms: float
    end_ms: float
    warmup: bool = False
    completed: bool = True
    workflow: str = ""
    """The workflow the orchestration ran, when the trace has several."""

    @property
    def latency_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass(frozen=True, slots=True)
class Summary:
    completed: int
    throughput_per_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class Call:
    """One provider call, or (from a log) one statement; `call_ms` is the whole provider call
    where it was measured (pool acquire included)."""

    op: str
    instance: str
    start_ms: float
    end_ms: float
    call_ms: float | None = None


@dataclass(slots=True)
class Trace:
    path: str
    source: str
    conditions: dict
    orchestrations: list[Orchestration] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    arrivals: int | None = None
    """Orchestrations started, when the header says (open loop)."""
    failed: int | None = None
    """Orchestrations that never completed, when the header says (open loop)."""
    server: dict | None = None
    """What the database server spent during the run, when the header says: `cpu_busy` (0-1),
    `cores`, and `statements` {op: {"calls", "mean_ms"}}."""
    activity_executions: dict | None = None
    """Activities run, when the header says: {"total", "distinct"} (distinct (instance,
    activity) pairs; the rest ran more than once)."""

    @property
    def measured(self) -> list[Orchestration]:
        """The measured orchestrations that completed."""
        return [o for o in self.orchestrations if not o.warmup and o.completed]

    @property
    def failures(self) -> list[Orchestration]:
        """The measured orchestrations that did not complete."""
        return [o for o in self.orchestrations if not o.warmup and not o.completed]


def _number(record: dict, key: str, where: str, whole: bool = False) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        kind = "a whole number" if whole else "a finite number"
        raise TraceError(f"{where}: '{key}' must be {kind}, got {value!r}")
    if whole and value != int(value):
        raise TraceError(f"{where}: '{key}' must be a whole number, got {value!r}")
    return value


def read_trace(path: str | Path) -> Trace:
    path = str(path)
    raw = read_input(path, f"a {FORMAT} file", TraceError)
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not UTF-8 text; expected a {FORMAT} JSON Lines file") from None
    rows = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not rows:
        raise TraceError(f"{path}: empty file; expected a {FORMAT} header line")
    n, first = rows[0]
    header = _json(first, f"{path}:{n}")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else header
        raise TraceError(f'{path}:{n}: header must have "format": "{FORMAT}", got {got!r}')
    conditions = header.get("conditions", {})
    if not isinstance(conditions, dict):
        raise TraceError(f"{path}:{n}: 'conditions' must be an object")
    trace = Trace(path, str(header.get("source", "")), conditions)
    for key in ("arrivals", "failed"):
        if key in header:
            value = int(_number(header, key, f"{path}:{n}", whole=True))
            if value < 0:
                raise TraceError(f"{path}:{n}: '{key}' must be >= 0, got {value}")
            setattr(trace, key, value)
    if "server" in header:
        trace.server = _server(header["server"], f"{path}:{n}")
    if "activity_executions" in header:
        trace.activity_executions = _executions(header["activity_executions"], f"{path}:{n}")
    if "faults" in conditions:
        _faults(conditions["faults"], f"{path}:{n}")
    for n, line in rows[1:]:
        where = f"{path}:{n}"
        record = _json(line, where)
        if not isinstance(record, dict):
            raise TraceError(f"{where}: a record must be a JSON object")
        kind = record.get("type")
        if kind == "orchestration":
            start = _number(record, "start_ms", where)
            end = _number(record, "end_ms", where)
            if end < start:
                raise TraceError(f"{where}: end_ms {end} is before start_ms {start}")
            trace.orchestrations.append(
                Orchestration(
                    str(record.get("instance", "")),
                    start,
                    end,
                    bool(record.get("warmup", False)),
                    (record.get("status") or "Completed") == "Completed",
                    str(record.get("workflow", "")),
                )
            )
        elif kind == "summary":
            completed = int(_number(record, "completed", where, whole=True))
            throughput = _number(record, "throughput_per_s", where)
            total = _number(record, "total_s", where)
            if completed < 0 or throughput < 0 or total <= 0:
                raise TraceError(
                    f"{where}: summary needs completed >= 0, throughput >= 0, total_s > 0"
                )
            trace.summaries.append(Summary(completed, throughput, total))
        elif kind == "call":
            start = _number(record, "start_ms", where)
            end = _number(record, "end_ms", where)
            call_ms = None if record.get("call_ms") is None else _number(record, "call_ms", where)
            trace.calls.append(
                Call(
                    str(record.get("op", "")), str(record.get("instance", "")), start, end, call_ms
                )
            )
    if not trace.orchestrations and not trace.summaries and not trace.calls:
        raise TraceError(f"{path}: no orchestration, summary or call records after the header")
    return trace


def _server(value: object, where: str) -> dict:
    """The header's `server` object, checked: finite numbers where numbers are."""
    if not isinstance(value, dict):
        raise TraceError(f"{where}: 'server' must be an object")
    out = {}
    for key in ("window_s", "cpu_s", "cpu_busy", "cores"):
        if key in value:
            number = _number(value, key, f"{where}: server")
            if number < 0:
                raise TraceError(f"{where}: server '{key}' must be >= 0, got {number}")
            out[key] = number
    statements = value.get("statements", {})
    if not isinstance(statements, dict):
        raise TraceError(f"{where}: server 'statements' must be an object")
    out["statements"] = {}
    for op, cost in statements.items():
        if not isinstance(cost, dict):
            raise TraceError(f"{where}: server statement '{op}' must be an object")
        calls = _number(cost, "calls", f"{where}: server statement '{op}'", whole=True)
        mean = _number(cost, "mean_ms", f"{where}: server statement '{op}'")
        if calls < 0 or mean < 0:
            raise TraceError(f"{where}: server statement '{op}' needs calls and mean_ms >= 0")
        out["statements"][str(op)] = {"calls": int(calls), "mean_ms": mean}
    if "waits" in value:
        out["waits"] = _waits(value["waits"], f"{where}: server 'waits'")
    return out


def _waits(value: object, where: str) -> dict:
    """`server.waits`: samples, and average backends by procedure and wait, each >= 0."""
    if not isinstance(value, dict) or not isinstance(value.get("backends"), dict):
        raise TraceError(f"{where} must be an object with 'samples' and 'backends'")
    samples = _number(value, "samples", where, whole=True)
    backends: dict[str, dict[str, float]] = {}
    for op, by_wait in value["backends"].items():
        if not isinstance(by_wait, dict):
            raise TraceError(f"{where}: '{op}' must be an object of wait -> mean backends")
        for wait in by_wait:
            mean = _number(by_wait, wait, f"{where}: '{op}'")
            if mean < 0:
                raise TraceError(f"{where}: '{op}' '{wait}' must be >= 0, got {mean}")
            backends.setdefault(str(op), {})[str(wait)] = mean
    return {"samples": int(samples), "backends": backends}


def _executions(value: object, where: str) -> dict:
    """`activity_executions`: whole `total` >= `distinct` >= 0."""
    if not isinstance(value, dict):
        raise TraceError(f"{where}: 'activity_executions' must be an object")
    total = _number(value, "total", f"{where}: activity_executions", whole=True)
    distinct = _number(value, "distinct", f"{where}: activity_executions", whole=True)
    if not 0 <= distinct <= total:
        raise TraceError(
            f"{where}: activity_executions needs 0 <= distinct <= total, got {distinct}, {total}"
        )
    return {"total": int(total), "distinct": int(distinct)}


FAULT_KINDS = ("database", "link", "node")


def _faults(value: object, where: str) -> None:
    """`conditions.faults`: a list of {kind, start_s, duration_s or null, node for a node}."""
    if not isinstance(value, list):
        raise TraceError(f"{where}: conditions 'faults' must be a list")
    for i, fault in enumerate(value):
        at = f"{where}: conditions.faults[{i}]"
        if not isinstance(fault, dict) or fault.get("kind") not in FAULT_KINDS:
            raise TraceError(f"{at}: needs 'kind', one of {', '.join(FAULT_KINDS)}")
        if _number(fault, "start_s", at) < 0:
            raise TraceError(f"{at}: 'start_s' must be >= 0")
        if fault.get("duration_s") is not None and _number(fault, "duration_s", at) <= 0:
            raise TraceError(f"{at}: 'duration_s' must be > 0 or null")
        if fault["kind"] == "node":
            _number(fault, "node", at, whole=True)


def _json(line: str, where: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise TraceError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise TraceError(f"{where}: not a trace record (JSON nested too deeply)") from None
    except ValueError as err:  # an integer of more than 4,300 digits
        raise TraceError(f"{where}: not a trace record ({err})") from None


def write_trace(path: str | Path, source: str, conditions: dict, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            json.dumps({"format": FORMAT, "source": source, "conditions": conditions}) + "\n"
        )
        for record in records:
            handle.write(json.dumps(record) + "\n")
