"""durosim from Python: the same results as the command line, as objects.

    import durosim

    s = durosim.load("lab", {"network.rtt_ms": 50})
    result = durosim.run(s)
    result.to_dict()          # exactly what `durosim run lab --set network.rtt_ms=50 --json` prints
    result.to_frame()         # a pandas DataFrame (when pandas is installed)

`compare`, `sweep`, `capacity` and `validate` work the same way. Nothing here prints, and
importing durosim leaves matplotlib's backend alone (figures are drawn without pyplot).
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from durosim.experiments import sweep as sweeps
from durosim.experiments.capacity import capacity as find_capacity
from durosim.experiments.capacity import check_objective, parse_slo
from durosim.experiments.compare import compare as compare_options
from durosim.experiments.provenance import provenance
from durosim.experiments.results import Summary, run_replications, summarize
from durosim.experiments.saturation import past_saturation
from durosim.experiments.size import MAX_EVENTS
from durosim.model import scenario as scenarios
from durosim.model.scenario import Scenario
from durosim.sim.config import toml_value


def _overrides(overrides: Mapping[str, object] | None) -> list[str]:
    return [f"{key}={toml_value(value)}" for key, value in (overrides or {}).items()]


def load(name_or_path: str | Path, overrides: Mapping[str, object] | None = None) -> Scenario:
    """A scenario: a TOML file or a shipped scenario's name, with `overrides` a dict of dotted
    keys as `--set` takes them (`{"network.rtt_ms": 50, "workload.mode": "open"}`)."""
    return scenarios.load(name_or_path, _overrides(overrides))


def _frame(rows: list[dict]):
    try:
        import pandas
    except ImportError:
        raise ImportError("to_frame() needs pandas: pip install pandas") from None
    return pandas.DataFrame(rows)


def _flat(prefix: str, value: object, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


@dataclass(frozen=True)
class RunResult:
    """`durosim run`: one scenario's replications, summarised."""

    scenario: Scenario
    summary: Summary
    past_saturation: str | None = None

    def to_dict(self) -> dict:
        """Exactly what `durosim run --json` prints."""
        out = self.summary.to_dict()
        if self.past_saturation:
            out["past_saturation"] = self.past_saturation
        out["provenance"] = provenance(self.scenario)
        return out

    def rows(self) -> list[dict]:
        """One flat row (dotted keys): the totals, then each workflow's."""
        row: dict = {}
        _flat("", self.to_dict(), row)
        return [row]

    def to_frame(self):
        return _frame(self.rows())


def run(
    scenario: Scenario,
    *,
    seed: int | None = None,
    replications: int | None = None,
    on_done: Callable[[], None] | None = None,
):
    """Simulate `scenario` (its replications, or `replications`) and summarise it; `on_done` is
    called as each simulated orchestration ends (for progress)."""
    if seed is not None:
        scenario = replace(scenario, seed=seed)
    if replications is not None:
        scenario = replace(scenario, replications=replications)
    summary = summarize(scenario, run_replications(scenario, on_done=on_done))
    return RunResult(scenario, summary, past_saturation(scenario, summary))


@dataclass(frozen=True)
class Rows:
    """Results that are a list of rows (compare's options, sweep's points, capacity's rates)."""

    data: dict | list
    row_list: list[dict] = field(default_factory=list)

    def to_dict(self):
        """Exactly what the command's `--json` prints."""
        return self.data

    def rows(self) -> list[dict]:
        return self.row_list

    def to_frame(self):
        return _frame(self.row_list)


def _flat_rows(rows: Iterable[dict]) -> list[dict]:
    out = []
    for row in rows:
        flat: dict = {}
        _flat("", row, flat)
        out.append(flat)
    return out


def compare(
    scenario: Scenario, whatifs: list[str], *, replications: int | None = None, on_row=None
) -> Rows:
    """The baseline and each what-if (`durosim options`) on common random numbers; `on_row`
    sees each row as it finishes, and Ctrl-C keeps the finished ones (`interrupted`)."""
    if replications is not None:
        scenario = replace(scenario, replications=replications)
    result = compare_options(scenario, list(whatifs), replications, on_row)
    result["provenance"] = provenance(scenario)
    return Rows(result, _flat_rows(result["rows"]))


def capacity(
    scenario: Scenario,
    slo: str,
    *,
    replications: int = 3,
    duration_s: float = 60.0,
    warmup_s: float = 10.0,
    min_rate: float | None = None,
    max_rate: float = 5000.0,
    on_point=None,
    values: dict | None = None,
    large: bool = False,
    runner=None,
) -> Rows:
    """The highest open-loop arrival rate within `slo` ("p95<2s", "order:p95<10s"), searched
    from `min_rate` to `max_rate`; rows are the rates tried, `on_point` sees each as it
    finishes; `values` names what `durosim capacity --vary` set. A rate whose work is beyond
    durosim's limit ends the search (`stopped` says where) unless `large`. `runner`, an entered
    executor (`durosim.experiments.sweep.executor("local", 2)`), runs replications in parallel;
    the result is the same whatever runs them."""
    objective = parse_slo(slo)
    check_objective(objective, scenario)
    result = find_capacity(
        scenario, objective, replications, duration_s, warmup_s, min_rate, max_rate,
        on_point=on_point, max_events=None if large else MAX_EVENTS, runner=runner,
    )  # fmt: skip
    result["slo_limit_ms"] = objective.limit_ms
    result["values"] = values or {}
    result["provenance"] = provenance(replace(scenario, replications=replications))
    return Rows(result, _flat_rows(result["points"]))


def sweep(
    scenario: str | Path,
    grid: Mapping[str, Iterable[object]],
    *,
    overrides: Mapping[str, object] | None = None,
    replications: int | None = None,
    jobs: int = 1,
    out: str | Path | None = None,
) -> Rows:
    """Every combination of the `grid` values (`{"network.rtt_ms": [10, 50]}`), one row each,
    as `durosim sweep` writes them (to `out` too when given; an interrupted sweep resumes)."""
    parsed = sweeps.parse_grid(
        [f"{key}={','.join(toml_value(v) for v in values)}" for key, values in grid.items()]
    )
    extra = _overrides(overrides) + ([f"replications={replications}"] if replications else [])
    table = scenarios.read_table(scenario)
    with tempfile.TemporaryDirectory(prefix="durosim-sweep-") as scratch:
        path = Path(out) if out is not None else Path(scratch) / "sweep.csv"
        with sweeps.executor("local", jobs, None) as runner:
            sweeps.run_sweep(str(scenario), table, extra, parsed, path, runner)
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    return Rows(rows, rows)


def validate(
    trace: str | Path,
    *,
    base: str | Path | None = None,
    overrides: Mapping[str, object] | None = None,
    replications: int = 10,
    infer_rtt: bool = False,
) -> Rows:
    """The model against one real trace: what `durosim validate --json` prints for it.
    `overrides` change scenario values after the trace's own conditions (`--set`)."""
    from durosim.evidence.trace_format import read_trace
    from durosim.evidence.validate import Base
    from durosim.evidence.validate import compare as compare_trace

    under = Base(base, tuple(_overrides(overrides))) if overrides else base
    result = compare_trace(read_trace(trace), under, replications, None, infer_rtt).as_json()
    rows = [
        {"metric": m, "measured": v, "predicted": result["predicted"].get(m),
         "error_pct": result["errors_pct"].get(m)}
        for m, v in result["measured"].items()
    ]  # fmt: skip
    return Rows(result, rows)
