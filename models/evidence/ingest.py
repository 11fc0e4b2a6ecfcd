"""Read what duroxide users already have: the runtime's logs and per-procedure timing exports.

Formats, detected line by line (a file may mix them):
- the JSON log `duroxide.init_tracing(..., log_format="json")` writes (one object a line with
  `timestamp`, `level`, `fields`, `target`);
- the compact text form of the same events (`2025-11-10T12:00:00.1Z DEBUG fetch_work_item:
  sqlx::query: summary="SELECT ..." elapsed=153.7ms`),
  and the bare `elapsed=156.154625ms - fetch_history` lines quoted in the seed analysis;
- per-procedure timing exports: the seed's `_duroxide_timings` query output (`procedure_name |
  calls | avg_ms | ...`, psql table or CSV) and `pg_stat_statements`-style CSV (`query, calls,
  mean_exec_time`, or `mean_time` before PostgreSQL 13).
What is read: every `sqlx::query` statement (its `elapsed` is the statement alone: one round trip
plus server time), duroxide-pg's provider-call lines (`duration_ms` covers the whole call, pool
acquire and its ping included, on non-empty fetches and acks only), activity run times, the
dispatcher slot ids, and server-side procedure times. Lines that cannot be used are counted by
reason, never fatal.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from durosim.sim.errors import InputError, read_input

# stored procedure -> provider operation
PROCEDURES = {
    "fetch_orchestration_item": "fetch_orchestration_item",
    "ack_orchestration_item": "ack_orchestration_item",
    "fetch_work_item": "fetch_work_item",
    "ack_worker": "ack_work_item",
    "ack_work_item": "ack_work_item",
    "enqueue_orchestrator_work": "enqueue_orchestrator_work",
    "fetch_history": "fetch_history",
    "get_custom_status": "get_custom_status",
}
FETCHES = ("fetch_orchestration_item", "fetch_work_item")
_PROCEDURE = re.compile(r"\b(" + "|".join(sorted(PROCEDURES, key=len, reverse=True)) + r")\b")
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ns|µs|us|ms|s)$")
_UNITS_MS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}
_PAIR = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)')
_TEXT_LINE = re.compile(
    r"^\s*(?P<ts>\d{4}-\d\d-\d\dT\S+)?\s*(?P<level>TRACE|DEBUG|INFO|WARN|ERROR)\s+(?P<rest>.*)$"
)
_BARE_ELAPSED = re.compile(r"elapsed=((?:\d+(?:\.\d*)?|\.\d+)(?:ns|µs|us|ms|s))(?![\w.])")
_SLOT = re.compile(r"^(orch|work)-(\d{1,4})-")
# A duration above this (an hour) is not a provider call or an activity: the line is skipped.
MAX_DURATION_MS = 3_600_000.0
_SCHEMA_STATEMENTS = ("CREATE", "ALTER", "DROP", "DO ", "COMMENT", "GRANT", "INSERT INTO _")


class IngestError(InputError):
    """A file with nothing usable in it (or that cannot be read)."""


@dataclass(frozen=True, slots=True)
class Statement:
    op: str
    empty: bool
    elapsed_ms: float
    end_s: float | None


@dataclass(frozen=True, slots=True)
class ProviderCall:
    op: str
    duration_ms: float
    end_s: float | None
    instance: str


@dataclass(frozen=True, slots=True)
class ProcedureTiming:
    op: str
    calls: int
    mean_ms: float
    p95_ms: float | None


@dataclass(slots=True)
class LogData:
    paths: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    provider_calls: list[ProviderCall] = field(default_factory=list)
    activities_ms: list[float] = field(default_factory=list)
    activities_per_instance: Counter = field(default_factory=Counter)
    slots: dict[str, set[int]] = field(default_factory=lambda: {"orch": set(), "work": set()})
    timings: dict[str, ProcedureTiming] = field(default_factory=dict)
    core_version: str | None = None
    lines: int = 0
    used: int = 0
    skipped: Counter = field(default_factory=Counter)

    @property
    def calls(self) -> list[dict]:
        """One `call` record per provider statement, times in ms from the log's first one; the
        instance and the whole provider call's duration where duroxide-pg logged them."""
        timed = [s for s in self.statements if s.end_s is not None]
        if not timed:
            return []
        origin = min(s.end_s - s.elapsed_ms / 1000.0 for s in timed)
        matches = match_provider_calls(timed, self.provider_calls)
        out = []
        for statement in sorted(timed, key=lambda s: s.end_s):
            record = {
                "type": "call",
                "op": statement.op + (" (empty)" if statement.empty else ""),
                "instance": "",
                "start_ms": round((statement.end_s - origin) * 1000.0 - statement.elapsed_ms, 3),
                "end_ms": round((statement.end_s - origin) * 1000.0, 3),
            }
            call = matches.get(id(statement))
            if call is not None:
                record["instance"] = call.instance
                record["call_ms"] = call.duration_ms
            out.append(record)
        return out


def match_provider_calls(statements: list[Statement], calls: list[ProviderCall]) -> dict:
    """Pair each provider-call line with the statement that ended just before it (same op)."""
    by_op: dict[str, list[Statement]] = {}
    for s in statements:
        if not s.empty:
            by_op.setdefault(s.op, []).append(s)
    for group in by_op.values():
        group.sort(key=lambda s: s.end_s)
    taken: dict[int, ProviderCall] = {}
    for call in calls:
        if call.end_s is None:
            continue
        best = None
        for s in reversed(by_op.get(call.op, [])):
            if s.end_s <= call.end_s + 1e-4 and id(s) not in taken:
                if call.end_s - s.end_s < 0.005:
                    best = s
                break
        if best is not None:
            taken[id(best)] = call
    return taken


def parse_duration_ms(text: str) -> float | None:
    """A tracing duration ("153.7ms", "2.1s") in ms; None unless it is one, finite and at most
    MAX_DURATION_MS."""
    match = _DURATION.match(text.strip().strip('"'))
    if not match:
        return None
    return _duration(float(match.group(1)) * _UNITS_MS[match.group(2)])


def _duration(ms: float | None) -> float | None:
    return ms if ms is not None and 0.0 <= ms <= MAX_DURATION_MS else None


def _timestamp(text: object) -> float | None:
    """An RFC 3339 timestamp in seconds since the epoch; None for anything else."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python's parser takes at most 6 fractional digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _number(value: object) -> float | None:
    """A finite number from a JSON value or a string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip('"'))
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _event(data: LogData, target: str, fields: dict, end_s: float | None) -> str | None:
    """Take one event; return why it was skipped, or None when it was used."""
    if target.startswith("sqlx::query"):
        summary = str(fields.get("summary", "")) + " " + str(fields.get("db.statement", ""))
        if summary.lstrip().upper().startswith(_SCHEMA_STATEMENTS):
            return "schema statement (migration)"
        match = _PROCEDURE.search(summary)
        if not match:
            return "statement of no provider operation"
        elapsed = fields.get("elapsed")
        elapsed_ms = parse_duration_ms(str(elapsed)) if elapsed is not None else None
        if elapsed_ms is None and _number(fields.get("elapsed_secs")) is not None:
            elapsed_ms = _duration(_number(fields["elapsed_secs"]) * 1000.0)
        if elapsed_ms is None:
            return "statement without a usable elapsed"
        op = PROCEDURES[match.group(1)]
        if "fetch_history_with_execution" in summary:
            return "statement of no provider operation"
        rows = _number(fields.get("rows_returned"))
        data.statements.append(Statement(op, op in FETCHES and rows == 0, elapsed_ms, end_s))
        return None
    message = str(fields.get("message", ""))
    if target.startswith("duroxide_pg") and "duration_ms" in fields:
        op = PROCEDURES.get(str(fields.get("operation", "")).strip('"'))
        duration = _duration(_number(fields.get("duration_ms")))
        if op is None or duration is None:
            return "provider line without operation or usable duration"
        instance = str(fields.get("instance_id", "")).strip('"')
        data.provider_calls.append(ProviderCall(op, duration, end_s, instance))
        return None
    if target.startswith("duroxide::runtime"):
        worker = str(fields.get("worker_id", "")).strip('"')
        slot = _SLOT.match(worker)
        if slot:
            data.slots[slot.group(1)].add(int(slot.group(2)))
        if message == "Activity completed":
            duration = _duration(_number(fields.get("duration_ms")))
            if duration is not None:
                data.activities_ms.append(duration)
            data.activities_per_instance[str(fields.get("instance_id", "")).strip('"')] += 1
            return None
        version = re.search(r"duroxide runtime \((\d{1,6}(?:\.\d{1,6}){0,3})\)", message)
        if version:
            data.core_version = version.group(1)
            return None
        return None if slot else "runtime event not used"
    return "event not used"


def _json_line(data: LogData, line: str) -> str | None:
    try:
        obj = json.loads(line)
    except RecursionError:
        return "JSON nested too deeply"
    except ValueError:  # not JSON, or an integer of more than 4,300 digits
        return "not JSON"
    if not isinstance(obj, dict) or not isinstance(obj.get("fields"), dict):
        return "JSON without fields"
    return _event(data, str(obj.get("target", "")), obj["fields"], _timestamp(obj.get("timestamp")))


def _text_line(data: LogData, line: str) -> str | None:
    match = _TEXT_LINE.match(line)
    if match is None:
        bare = _BARE_ELAPSED.search(line)
        procedure = _PROCEDURE.search(line)
        if bare and procedure:
            op = PROCEDURES[procedure.group(1)]
            data.statements.append(Statement(op, False, parse_duration_ms(bare.group(1)), None))
            return None
        return "unrecognised line"
    rest = match.group("rest")
    # Span prefixes ("fetch_work_item: ", "read{instance=i-1}: ") come before the target.
    target = ""
    for part in re.split(r":\s+", rest):
        if "::" in part and " " not in part.strip():
            target = part.strip()
            break
    fields = {k: v.strip('"') for k, v in _PAIR.findall(rest)}
    message_part = rest.split(target + ":", 1)[1] if target and target + ":" in rest else rest
    fields.setdefault("message", _PAIR.sub("", message_part).strip())
    if not target:
        return "text line without a target"
    return _event(data, target, fields, _timestamp(match.group("ts")))


_TIMING_NAME = ("procedure_name", "procedure", "operation", "query")
_TIMING_MEAN = ("avg_ms", "mean_ms", "mean_exec_time", "mean_time")
_TIMING_TOTAL = ("total_exec_time", "total_time")
# columns only a pg_stat_statements export has: a file with one is an export, whatever it lacks
_STATEMENTS_ONLY = ("queryid", "total_exec_time", "total_time", "mean_exec_time", "mean_time")


def procedure_of(text: str) -> str | None:
    """The provider operation a statement's text calls (None: not one of the provider's)."""
    match = _PROCEDURE.search(text)
    return PROCEDURES[match.group(1)] if match else None


def _timing_table(data: LogData, text: str) -> bool:
    """A CSV or psql-table export of per-procedure server times; True when it was one."""
    rows = [
        line for line in text.splitlines() if line.strip() and not re.match(r"^[-+|\s]+$", line)
    ]
    if not rows:
        return False
    if len(rows[0]) > 4096:  # no export's header is this long
        return False
    delimiter = "|" if "|" in rows[0] else ","
    header = [h.strip().lower() for h in next(csv.reader([rows[0]], delimiter=delimiter))]
    name = next((h for h in _TIMING_NAME if h in header), None)
    mean_col = next((h for h in _TIMING_MEAN if h in header), None)
    total_col = next((h for h in _TIMING_TOTAL if h in header), None)
    by_total = mean_col is None and total_col is not None and "calls" in header  # total / calls
    if name is None or (mean_col is None and not by_total):
        if any(h in header for h in _STATEMENTS_ONLY):
            raise IngestError(
                f"a pg_stat_statements export without the columns calibrate needs (has "
                f"{', '.join(header[:8])}{', ...' if len(header) > 8 else ''}); it needs query, "
                "calls and mean_exec_time (or total_exec_time; mean_time/total_time before "
                "PostgreSQL 13)"
            )
        return False
    for line in rows[1:]:
        data.lines += 1
        try:
            cells = next(csv.reader([line], delimiter=delimiter))
        except csv.Error:
            data.skipped["timing row that is not CSV"] += 1
            continue
        row = dict(zip(header, (c.strip() for c in cells)))
        procedure = _PROCEDURE.search(row.get(name, ""))
        if mean_col is not None:
            mean_ms = _duration(_number(row.get(mean_col)))
        else:
            total, count = _number(row.get(total_col)), _number(row.get("calls"))
            mean_ms = _duration(total / count) if total is not None and count else None
        if procedure is None:
            data.skipped["timing row of no provider operation"] += 1
            continue
        calls = _number(row.get("calls", "0"))
        if mean_ms is None or calls is None or calls < 0 or calls != int(calls):
            data.skipped["timing row without a usable mean or call count"] += 1
            continue
        op = PROCEDURES[procedure.group(1)]
        calls = int(calls)
        previous = data.timings.get(op)
        if previous is not None:  # several statements of one procedure: weight by calls
            total = previous.calls + calls
            mean_ms = (previous.mean_ms * previous.calls + mean_ms * calls) / max(total, 1)
            calls = total
        data.timings[op] = ProcedureTiming(
            op, calls, mean_ms, _duration(_number(row.get("p95_ms")))
        )
        data.used += 1
    return True


def read_logs(paths: list[str | Path]) -> LogData:
    data = LogData()
    for path in paths:
        raw = read_input(path, "a duroxide log or timing export", IngestError)
        text = raw.decode("utf-8", errors="replace")
        data.paths.append(str(path))
        before, seen = data.used, data.skipped.copy()
        try:
            table = _timing_table(data, text)
        except IngestError as err:
            raise IngestError(f"{path}: {err}") from None
        if not table:
            for line in text.splitlines():
                if not line.strip():
                    continue
                data.lines += 1
                reason = (
                    _json_line(data, line)
                    if line.lstrip().startswith("{")
                    else _text_line(data, line)
                )
                if reason is None:
                    data.used += 1
                else:
                    data.skipped[reason] += 1
        if data.used == before:
            reasons = "; ".join(f"{n} {why}" for why, n in (data.skipped - seen).most_common(3))
            raise IngestError(
                f"{path}: nothing durosim can use (no sqlx statements, provider calls, runtime "
                "events or procedure timings); expected a duroxide log or a timing export"
                + (f"; lines skipped: {reasons}" if reasons else "")
            )
    return data


def read_duroxide_log(path: str | Path) -> LogData:
    return read_logs([path])
