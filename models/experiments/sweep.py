"""Factorial sweeps: one scenario at every point of a grid of `--set` values, each point's
replications reduced to one CSV row (desmod's factorial sweeps, with its idea of one place where
a run's configuration becomes fully known).

A point's replications are seeded by the scenario's seed and the replication index alone (as in
`durosim run`), so a row never depends on how many processes ran the sweep or in which order the
points finished. Rows are appended and flushed as points finish; a rerun skips the points its CSV
already holds, so an interrupted sweep loses at most the points that were running. Each row
carries a digest of the fixed part of the configuration (the file, `--set`, `--replications`), so
a resumed sweep cannot mix rows computed for another baseline.

The points run in this process, in local processes or on a Dask cluster
(`durosim.experiments.executors`).
Scenarios are loaded and checked before any point is simulated.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from durosim.experiments.executors import DASK_INSTALL, SweepError, executor  # noqa: F401
from durosim.experiments.results import run_replications, summarize
from durosim.model.scenario import Scenario, load_table
from durosim.sim.config import ConfigError, parse_override, to_table
from durosim.sim.stats import mean_ci

# The columns after the grid's, in order. `_ci` columns are 95% CI half-widths across
# replications (empty with one replication); `total_s` is empty unless the mode has one.
METRICS = (
    "latency_mean_ms",
    "latency_mean_ci_ms",
    "latency_p50_ms",
    "latency_p50_ci_ms",
    "latency_p95_ms",
    "latency_p95_ci_ms",
    "latency_p99_ms",
    "latency_p99_ci_ms",
    "throughput_per_s",
    "throughput_ci_per_s",
    "total_s",
    "total_ci_s",
    "completed",
    "failed",
    "calls_per_orchestration",
    "pool_in_use_mean",
    "server_utilisation",
    "recovery_s",
    "activity_reruns",
    "replications",
    "config_digest",
    "wall_s",
)


@dataclass(frozen=True, slots=True)
class GridValue:
    text: str
    """As typed; a point's scenario is loaded with KEY=text, exactly as `--set` reads it."""
    value: object

    @property
    def cell(self) -> str:
        return _cell(self.value, self.text)


Grid = list[tuple[str, list[GridValue]]]
Point = tuple[GridValue, ...]


def _split_values(text: str) -> list[str]:
    """Split at commas outside brackets, braces and quotes (values may be inline tables)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _canonical(value: object) -> tuple[str, object]:
    """What makes two values the same point: 50 and 50.0 are, 1 and true are not."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, str):
        return ("str", value)
    return ("toml", json.dumps(value, sort_keys=True, default=str))


def _cell(value: object, text: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return text.strip()


def _cell_key(cell: str) -> tuple[str, object]:
    try:
        return _canonical(parse_override(f"k={cell}")[1])
    except ConfigError:
        return ("str", cell)


def parse_grid(texts: Iterable[str]) -> Grid:
    """'KEY=V1,V2,...' options -> [(key, values)], each value read as TOML like `--set` reads it."""
    grid: Grid = []
    for text in texts:
        key, eq, values = text.partition("=")
        key = key.strip()
        if not eq or not key or not values.strip():
            raise SweepError(f"--grid {text!r}: expected KEY=V1,V2,..., e.g. network.rtt_ms=20,50")
        if any(key == k for k, _ in grid):
            raise SweepError(f"--grid {text!r}: {key} is already a grid key")
        twin = next((k for k, _ in grid if _value_of(k) == _value_of(key)), None)
        if twin is not None:
            raise SweepError(f"--grid {text!r}: {key} and {twin} set the same value; keep one")
        parsed: list[GridValue] = []
        for raw in _split_values(values):
            if not raw:
                raise SweepError(f"--grid {text!r}: an empty value")
            try:
                value = parse_override(f"{key}={raw}")[1]
            except ConfigError:
                raise SweepError(f"--grid {text!r}: {raw!r} is not a TOML value") from None
            if any(_canonical(value) == _canonical(p.value) for p in parsed):
                raise SweepError(f"--grid {text!r}: {raw!r} appears twice")
            parsed.append(GridValue(raw, value))
        grid.append((key, parsed))
    if not grid:
        raise SweepError("no --grid given: name at least one KEY=V1,V2,...")
    return grid


def _value_of(key: str) -> str:
    """The value a key sets: `network.rtt_ms`, `network.rtt` and `network.rtt_s` are one."""
    *path, leaf = key.split(".")
    for suffix in ("_ms", "_s"):
        if leaf.endswith(suffix) and not leaf.endswith("_per_s"):
            leaf = leaf[: -len(suffix)]
            break
    return ".".join([*path, leaf])


def expand(grid: Grid) -> list[Point]:
    """The cartesian product of the grid, the last key varying fastest; a point's index is its
    position here."""
    return list(itertools.product(*(values for _, values in grid)))


def point_overrides(grid: Grid, point: Point) -> list[str]:
    return [f"{key}={value.text}" for (key, _), value in zip(grid, point)]


def point_key(point: Point) -> tuple:
    return tuple(_canonical(v.value) for v in point)


WORKFLOW_METRICS = ("completed", "latency_mean_ms", "latency_p50_ms", "latency_p95_ms",
                    "throughput_per_s")  # fmt: skip
"""Columns per started workflow, named `WORKFLOW.METRIC`, when the scenario has workflows."""


def columns(grid: Grid, workflows: Iterable[str] = ()) -> list[str]:
    per_workflow = [f"{name}.{metric}" for name in workflows for metric in WORKFLOW_METRICS]
    return [key for key, _ in grid] + list(METRICS) + per_workflow


def _workflow_cells(summary) -> dict[str, object]:
    cells: dict[str, object] = {}
    for name, row in summary.workflows().items():
        cells[f"{name}.completed"] = row["completed"]
        for stat in ("mean", "p50", "p95"):
            cells[f"{name}.latency_{stat}_ms"] = row["latency_ms"][stat]
        cells[f"{name}.throughput_per_s"] = row["throughput_per_s"]
    return cells


def config_digest(scenario: Scenario, grid_keys: Iterable[str] = ()) -> str:
    """A short digest of everything a point's row depends on besides its grid values: the
    scenario with the grid's keys (and their `_ms`/`_s` twins) left out."""
    table = to_table(scenario)
    for key in grid_keys:
        *path, leaf = key.split(".")
        node = table
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            stem = leaf.removesuffix("_ms") if leaf.endswith("_ms") else leaf.removesuffix("_s")
            for twin in (leaf, stem, stem + "_ms", stem + "_s"):
                node.pop(twin, None)
    text = json.dumps(table, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_points(
    table: dict, source: str, calls: list[tuple[int, list[str]]]
) -> list[tuple[int, Scenario | str]]:
    """Each (index, overrides) loaded from the scenario's table: the scenario or the error."""
    out: list[tuple[int, Scenario | str]] = []
    for index, overrides in calls:
        try:
            out.append((index, load_table(table, overrides)))
        except ConfigError as err:
            out.append((index, f"{source}: {err}"))
    return out


def _number(value: float | None, digits: int) -> float | str:
    if value is None or math.isnan(value):
        return ""
    return round(value, digits)


def _fault_cells(summary) -> dict[str, object]:
    """With faults: the mean recovery time ("never" when a replication did not recover) and
    the activities run again a run; empty cells without."""
    report = summary.faults
    if report is None:
        return {"recovery_s": "", "activity_reruns": ""}
    recovery = report["recovery_s"]
    return {
        "recovery_s": "never" if recovery is None else recovery,
        "activity_reruns": report["activity_reruns_per_run"],
    }


def run_point(index: int, cells: dict[str, str], scenario: Scenario, digest: str):
    """Simulate one point's replications and reduce them to its row: (index, row)."""
    started = time.perf_counter()
    summary = summarize(scenario, run_replications(scenario))
    row: dict[str, object] = dict(cells)
    for name, values in summary.latency_per_run_ms.items():
        m, half = mean_ci(values)
        row[f"latency_{name}_ms"] = _number(m, 4)
        row[f"latency_{name}_ci_ms"] = _number(half, 4)
    m, half = mean_ci(summary.throughput_per_run)
    row["throughput_per_s"] = _number(m, 6)
    row["throughput_ci_per_s"] = _number(half, 6)
    m, half = mean_ci(summary.total_per_run_s) if summary.total_per_run_s else (None, None)
    row["total_s"] = _number(m, 4)
    row["total_ci_s"] = _number(half, 4)
    calls = summary.calls_per_orchestration
    row.update(
        completed=summary.completed,
        failed=summary.failed,
        calls_per_orchestration=round(sum(calls.values()), 3) if calls else "",
        pool_in_use_mean=round(summary.pool_in_use_mean, 3),
        server_utilisation=round(summary.server_utilisation, 4),
        **_fault_cells(summary),
        replications=summary.replications,
        **_workflow_cells(summary),
        config_digest=digest,
        wall_s=round(time.perf_counter() - started, 4),
    )
    return index, row


# ---------------------------------------------------------------------------------------------
# The CSV: resume, append, order.


def read_existing(
    path: Path, header: list[str], digest: str, points: list[Point]
) -> list[list[str]]:
    """The complete rows of an earlier run of this sweep at `path` (none if it is new). A last line
    cut off by an interruption is dropped; other columns, another baseline, or a row this sweep
    would not have written (a point outside the grid or twice, a metric that is not a number)
    are an error, so a resumed sweep never carries a row it cannot vouch for."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (IsADirectoryError, UnicodeDecodeError, OSError) as err:
        raise SweepError(f"{path}: cannot read it as a sweep's CSV ({err})") from None
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the row being written when a run was stopped
    lines = list(csv.reader(io.StringIO(text)))
    if not lines:
        return []
    if lines[0] != header:
        theirs = lines[0][: lines[0].index(METRICS[0])] if METRICS[0] in lines[0] else None
        ours = header[: header.index(METRICS[0])]
        what = (
            f"a sweep over {', '.join(theirs) or 'nothing'}, not over {', '.join(ours)}"
            if theirs is not None and theirs != ours
            else "other columns than this sweep writes"
        )
        raise SweepError(f"{path}: holds {what}; use another --out")
    rows = lines[1:]
    at = header.index("config_digest")
    other = {row[at] for row in rows if len(row) == len(header)} - {digest}
    if other:
        raise SweepError(
            f"{path}: holds rows for another scenario, --set or --replications (config digest "
            f"{sorted(other)[0]}, this sweep's is {digest}); use another --out"
        )
    _check_rows(path, header, rows, points)
    return rows


def _check_rows(path: Path, header: list[str], rows: list[list[str]], points: list[Point]):
    keys = header[: header.index(METRICS[0])]
    wanted = {point_key(p) for p in points}
    seen: set[tuple] = set()
    for line, row in enumerate(rows, 2):
        where = f"{path}:{line}"
        if len(row) != len(header):
            raise SweepError(
                f"{where}: {len(row)} cells where this sweep writes {len(header)}; the file was "
                "edited or is another sweep's: use another --out"
            )
        point = tuple(_cell_key(cell) for cell in row[: len(keys)])
        if point not in wanted:
            described = ", ".join(f"{k}={c}" for k, c in zip(keys, row))
            raise SweepError(
                f"{where}: a row for {described}, which is not a point of this grid; add it to "
                "--grid or use another --out"
            )
        if point in seen:
            raise SweepError(f"{where}: a second row for the same grid point; use another --out")
        seen.add(point)
        for column, cell in zip(header[len(keys) :], row[len(keys) :]):
            if column != "config_digest" and cell and not _is_metric(cell):
                raise SweepError(
                    f"{where}: {column} = {cell!r} is not a number this sweep writes; the file "
                    "was edited: use another --out"
                )


def _is_metric(cell: str) -> bool:
    try:
        value = float(cell)
    except ValueError:
        return False
    return math.isfinite(value) and value >= 0


def _write_all(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Replace the file in one step, so an interruption leaves the old or the new one whole."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, path)


def _raise_first(
    results: list[tuple[int, Scenario | str]], keys: list[str], points: list[Point]
) -> dict[int, Scenario]:
    errors = sorted((i, r) for i, r in results if isinstance(r, str))
    if errors:
        index, message = errors[0]
        described = ", ".join(f"{k}={v.text}" for k, v in zip(keys, points[index]))
        raise SweepError(f"grid point {described}: {message}")
    return dict(results)


@dataclass(slots=True)
class SweepResult:
    points: int
    computed: int
    resumed: int
    wall_s: float
    point_wall_s: list[float]


def run_sweep(
    source: str,
    table: dict,
    overrides: list[str],
    grid: Grid,
    out: str | Path,
    runner,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> SweepResult:
    """Run every point of `grid` not yet in `out` on `runner` (an entered executor), appending a
    row per point as it finishes, then order the file's rows by point index.

    `overrides` (`--set`, then `replications=N`) apply before each point's grid values. Raises
    SweepError, before any point is simulated, for a point whose scenario does not load."""
    started = time.perf_counter()
    out = Path(out)
    try:
        base = load_table(table, overrides)
    except ConfigError as err:
        raise SweepError(f"{source}: {err}") from None
    keys = [key for key, _ in grid]
    digest = config_digest(base, keys)
    points = expand(grid)
    header = columns(grid, [w.name for w in base.workload.workflows if w.weight is not None])
    # The first point alone first: a bad key is named before the CSV is looked at.
    first = [(0, overrides + point_overrides(grid, points[0]))]
    _raise_first(load_points(table, source, first), keys, points)
    existing = read_existing(out, header, digest, points)
    done = {tuple(_cell_key(cell) for cell in row[: len(keys)]) for row in existing}
    todo = [(i, p) for i, p in enumerate(points) if point_key(p) not in done]

    # Load and check every point first; in chunks, so a big grid loads on every worker.
    chunks = max(1, min(len(todo), runner.workers * 4))
    calls = [(i, overrides + point_overrides(grid, p)) for i, p in todo]
    chunked = [(table, source, calls[k::chunks]) for k in range(chunks)] if calls else []
    loaded = _raise_first(
        [pair for pairs in runner.map_unordered(load_points, chunked) for pair in pairs],
        keys,
        points,
    )

    _write_all(out, header, existing)
    if on_start:
        on_start(len(todo), len(points) - len(todo))
    walls: list[float] = []
    tasks = [(i, dict(zip(keys, (v.cell for v in p))), loaded[i], digest) for i, p in todo]
    with open(out, "a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        for _, row in runner.map_unordered(run_point, tasks):
            writer.writerow(row)
            handle.flush()
            walls.append(row["wall_s"])
            if on_row:
                on_row(row)

    order = {point_key(p): i for i, p in enumerate(points)}
    rows = read_existing(out, header, digest, points)
    rows.sort(key=lambda r: order[tuple(_cell_key(c) for c in r[: len(keys)])])
    _write_all(out, header, rows)
    return SweepResult(
        points=len(points),
        computed=len(todo),
        resumed=len(points) - len(todo),
        wall_s=time.perf_counter() - started,
        point_wall_s=walls,
    )
