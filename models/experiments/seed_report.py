"""`durosim report`: the seed analysis (docs/seed/REMOTE_PERFORMANCE_ANALYSIS.md) answered point
by point: each remedy's estimate there beside its simulated effect at 150 ms, 70 ms and locally,
the claims the simulation contradicts with the reason, and the figures."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from durosim.experiments.compare import compare
from durosim.experiments.results import run_replications, summarize
from durosim.experiments.size import check_size, estimated_events
from durosim.model.scenario import Scenario
from durosim.model.whatif import apply
from durosim.model.world import simulate
from durosim.sim.dist import Const
from durosim.sim.errors import InputError

# (what-if, the remedy as the analysis names it, its estimate there)
REMEDIES = (
    ("no_client_polling", "Option 1: reduce client polling", "saves ~450 ms (3 reads x 150 ms)"),
    ("batch_worker_fetch", "Option 2: batch worker operations", "saves up to 1,200 ms"),
    ("pipelining", "Option 3: pipelining / multiplexing", "marginal; not feasible with sqlx"),
    ("colocate", "Option 4: co-location (1 ms)", "30-150x faster"),
    ("server_side_turns", "Option 5: server-side execution", "maximum impact"),
    ("no_stored_procedures", "Stored procedures (undone)", "they give a 46% improvement"),
    ("no_pool_ping", "not in the analysis: no pool ping", "-"),
    ("activity_context_cached", "not in the analysis: no per-activity history read", "-"),
    ("long_poll", "not in the analysis: LISTEN/NOTIFY", "-"),
)
SWEEP_RTTS_MS = (1, 2, 5, 10, 20, 50, 100, 200)
SWEEP_SPECS = ("baseline", *(spec for spec, _, _ in REMEDIES if spec != "colocate"))
"""What the RTT sweep draws: colocate is left out, as it fixes the RTT."""
MIN_RTT_MS = 0.001
PILOT_RTT_MS = 1000.0
"""Where the pilot counts an orchestration's round trips: long enough that they, not the poll
interval, make its latency."""


def _at_rtt(scenario: Scenario, rtt_ms: float) -> Scenario:
    return replace(scenario, network=replace(scenario.network, rtt=Const(rtt_ms / 1000.0)),
                   name=f"{scenario.name} @ {rtt_ms:g} ms")  # fmt: skip


def _none_completed(row: dict) -> bool:
    return row["latency_ms"]["mean"] is None


def _effect(row: dict) -> str:
    if _none_completed(row):
        return "none completed"
    base = row["change"]["latency_mean_ms"]
    if base.get("pct") is None:
        return "-"
    throughput = row["change"]["throughput_per_s"]
    return (f"{row['latency_ms']['mean']:.0f} ms ({base['diff']:+.0f} ms, {base['pct']:+.0f}%); "
            f"{row['throughput_per_s']:.3g}/s ({throughput['pct']:+.0f}%)")  # fmt: skip


def remedies_table(results: dict[float, dict]) -> list[str]:
    rtts = sorted(results, reverse=True)
    lines = [
        "| remedy | the analysis says | "
        + " | ".join(f"simulated at {r:g} ms" for r in rtts)
        + " |",
        "|---|---|" + "---|" * len(rtts),
    ]
    base_cells = [
        "none completed"
        if _none_completed(results[r]["rows"][0])
        else f"{results[r]['rows'][0]['latency_ms']['mean']:.0f} ms; "
        f"{results[r]['rows'][0]['throughput_per_s']:.3g}/s"
        for r in rtts
    ]
    lines.append("| (baseline) | | " + " | ".join(base_cells) + " |")
    for spec, remedy, estimate in REMEDIES:
        cells = []
        for r in rtts:
            row = next(x for x in results[r]["rows"] if x["option"] == spec)
            cells.append(_effect(row))
        lines.append(f"| {remedy} (`{spec}`) | {estimate} | " + " | ".join(cells) + " |")
    return lines


def stored_procedures_line(results: dict[float, dict]) -> str:
    parts = []
    for rtt in sorted(results, reverse=True):
        rows = {r["option"]: r for r in results[rtt]["rows"]}
        with_sp = rows["baseline"]["latency_ms"]["mean"]
        without = rows["no_stored_procedures"]["latency_ms"]["mean"]
        if with_sp is None or without is None:
            parts.append(f"unknown at {rtt:g} ms (none completed)")
        else:
            parts.append(f"{(1 - with_sp / without) * 100:.0f}% at {rtt:g} ms")
    return (
        "Stored procedures: the latency they save against the provider before them (fetch 7 "
        "statements, ack 8 plus one per history event) is " + ", ".join(parts) +
        "; the analysis estimated 46%."
    )  # fmt: skip


def claims(sequential: dict, stress: dict | None) -> list[str]:
    """The analysis's claims the simulation contradicts, each with the reason."""
    base = sequential["rows"][0]
    if _none_completed(base):
        return [f"- None: at {sequential['rtt_ms']:g} ms no orchestration completed."]
    calls = base["calls_per_orchestration"]
    total_calls = sum(calls.values())
    busy = sum(v for k, v in calls.items() if "(empty)" not in k)
    breakdown = base["breakdown_ms"]
    latency = base["latency_ms"]["mean"]
    rtt = sequential["rtt_ms"]
    out = [
        f'- **"17 round trips x 150 ms = 2,550 ms, matching the 2,745 ms observed."** One '
        f"orchestration at a time at {rtt:g} ms takes {latency:.0f} ms ({latency / rtt:.0f} RTT), "
        f"not 2,550: it makes {busy:.0f} provider calls besides empty polls "
        f"({total_calls:.0f} with them), each call costs 2 round trips (sqlx pings the connection "
        "first), each activity makes 3 calls (the worker reads the history), and the client's "
        "checks are 2 calls each. The match with 2,745 ms is a coincidence: see the next point.",
        '- **"Latency 2,745 ms" is not a latency.** The stress test\'s "Avg Latency" column is '
        "total time / completed, i.e. 1000 / throughput, of a run that keeps 20 orchestrations "
        "in flight. By Little's law an orchestration there takes about 20 / throughput.",
    ]
    if stress is not None and stress["rows"][0]["throughput_per_s"] > 0:
        row = stress["rows"][0]
        out.append(
            f"  Simulated, that run ({stress['scenario']}): {row['throughput_per_s']:.3g} "
            f'orch/s, a "latency" column of {1000 / row["throughput_per_s"]:.0f} ms, and a real '
            f"mean orchestration latency of {row['latency_ms']['mean'] / 1000:.1f} s."
        )
    network_share = breakdown["network"] / latency * 100.0
    waits = breakdown["slot_busy"] + breakdown["poll_wait"] + breakdown["client_backoff"]
    out.append(
        f'- **"Network RTT creates 93% of latency."** On the critical path of one orchestration '
        f"at {rtt:g} ms, round trips are {network_share:.0f}% of the latency; "
        f"{waits / latency * 100:.0f}% is waiting: for a dispatcher slot busy with the other "
        "activities (2 worker slots, 5 activities of 3 calls each), for the next poll and for "
        "the client's back-off. Those waits are round trips too, but of other work, so no "
        "single remedy removes them all (see the breakdown figure)."
    )
    return out


def _planned(sequential: Scenario, stress: Scenario | None, rtts: tuple[float, ...],
             replications: int) -> list[Scenario]:  # fmt: skip
    """Every variant the report simulates, in order, each with its replications."""
    planned = []
    for rtt in rtts:
        base = _at_rtt(sequential, rtt)
        planned += [base] + [apply(base, spec) for spec, _, _ in REMEDIES]
    if stress is not None:
        planned.append(stress)
    planned = [replace(s, replications=replications) for s in planned]
    for rtt in SWEEP_RTTS_MS:
        base = replace(_at_rtt(sequential, rtt), replications=max(2, replications // 2))
        planned += [base if spec == "baseline" else apply(base, spec) for spec in SWEEP_SPECS]
    return planned


def steps(sequential: Scenario, stress: Scenario | None, rtts: tuple[float, ...],
          replications: int) -> int:  # fmt: skip
    """How many times `build` calls its `on_step`: once per variant simulated."""
    return len(_planned(sequential, stress, rtts, replications))


def max_rtt_ms(sequential: Scenario) -> tuple[float, float]:
    """(the longest RTT at which the baseline's orchestrations can complete within the client's
    wait, the round trips one makes), counted by a pilot of one orchestration at PILOT_RTT_MS
    with no wait limit; (inf, nan) when the pilot completes none."""
    pilot = _at_rtt(sequential, PILOT_RTT_MS)
    workload = replace(pilot.workload, mode="sequential", count=1, warmup=1, wait_timeout_s=1e9)
    latencies_s = simulate(replace(pilot, workload=workload), 0).latencies_s
    if not latencies_s:
        return math.inf, math.nan
    round_trips = max(latencies_s) / (PILOT_RTT_MS / 1000.0)
    limit = sequential.workload.wait_timeout_s * 1000.0 / round_trips
    digit = 10.0 ** (math.floor(math.log10(limit)) - 1)
    return math.floor(limit / digit) * digit, round_trips  # two significant digits, down


def check(sequential: Scenario, stress: Scenario | None, rtts: tuple[float, ...],
          replications: int, large: bool) -> None:  # fmt: skip
    """Refuse, before any work, a report whose estimated work is beyond `check_size`'s limit
    (unless `large`) and an RTT at which the baseline cannot complete."""
    planned = _planned(sequential, stress, rtts, replications)
    unit = replace(sequential, replications=replications)
    runs = math.ceil(sum(estimated_events(s) for s in planned) / estimated_events(unit))
    check_size(unit, large, runs, f"report on {sequential.name} ({len(planned)} variants)")
    limit, round_trips = max_rtt_ms(sequential)
    for rtt in rtts:
        if rtt > limit:
            raise InputError(
                f"--rtt {rtt:g}: expected {MIN_RTT_MS:g} to {limit:g} ms for {sequential.name}: "
                f"its orchestration makes about {round_trips:.0f} round trips, so beyond that "
                f"none completes within the client's wait of "
                f"{sequential.workload.wait_timeout_s:g} s (workload.wait_timeout_s)"
            )


@dataclass(frozen=True, slots=True)
class Written:
    """What `build` wrote. An interrupted build wrote the page and figures of what finished."""

    page: Path
    figures: tuple[Path, ...]
    finished: int
    """Variants simulated, of `steps(...)` (an interrupted comparison's finished rows count, though
    its section is left out)."""
    interrupted: bool = False


def _complete(result: dict) -> dict:
    """A comparison cut short by Ctrl-C (it keeps its finished rows) stops the whole report."""
    if result.get("interrupted"):
        raise KeyboardInterrupt
    return result


def build(sequential: Scenario, stress: Scenario | None, rtts: tuple[float, ...],
          replications: int, out: Path,
          on_step: Callable[[], None] | None = None) -> Written:  # fmt: skip
    """Simulate every remedy at `rtts`, the stress scenario and the RTT sweep, then write
    report.md and its figures into `out`. `on_step` is called after each variant (see `steps`).
    An interrupt (Ctrl-C) stops the simulations; what finished is still written, and the result
    is marked `interrupted`."""
    from durosim.plots.whatif import breakdown_bars, options_side_by_side, versus_rtt

    out.mkdir(parents=True, exist_ok=True)
    specs = [spec for spec, _, _ in REMEDIES]
    finished = 0

    def step(_row: dict | None = None) -> None:
        nonlocal finished
        finished += 1
        if on_step:
            on_step()

    results: dict[float, dict] = {}
    stress_result = None
    points: list[dict] = []
    interrupted = False
    try:
        for rtt in rtts:
            results[rtt] = _complete(
                compare(_at_rtt(sequential, rtt), specs, replications, on_row=step)
            )
        if stress is not None:
            stress_result = _complete(compare(stress, [], replications, on_row=step))
        for rtt in SWEEP_RTTS_MS:
            base = _at_rtt(sequential, rtt)
            for spec in SWEEP_SPECS:
                variant = base if spec == "baseline" else apply(base, spec)
                runs = run_replications(variant, max(2, replications // 2))
                points.append({"option": spec, "rtt_ms": rtt, **summarize(variant, runs).to_dict()})
                step()
    except KeyboardInterrupt:
        interrupted = True
    figures = []

    def draw(figure, name: str) -> None:
        figure.savefig(out / name, dpi=110)
        figures.append(out / name)

    top = max(results, default=None)
    if top is not None:
        draw(options_side_by_side(results[top]), "options.png")
        draw(breakdown_bars(results[top]), "breakdown.png")
    if not interrupted:
        draw(versus_rtt(points, sequential.name), "versus_rtt.png")
    page = out / "report.md"
    page.write_text(
        "\n".join(_page(sequential, replications, results, stress_result, figures, interrupted)),
        encoding="utf-8",
    )
    return Written(page, tuple(figures), finished, interrupted)


def _page(sequential: Scenario, replications: int, results: dict[float, dict],
          stress_result: dict | None, figures: list[Path],
          interrupted: bool) -> list[str]:  # fmt: skip
    """The page's lines: the sections whose simulations finished."""
    lines = [
        "# The remote-performance analysis, simulated",
        "",
        f"Scenario: {sequential.name} ({sequential.runtime}), one orchestration at a time, "
        f"fan-out {sequential.workload.fanout}, "
        f"{sequential.runtime_options.orchestration_concurrency}:"
        f"{sequential.runtime_options.worker_concurrency}, pool {sequential.pool.size}; "
        f"{replications} replications on common random numbers. Each cell: mean latency (change "
        'against the baseline), throughput (change); "none completed": no orchestration '
        f"completed within the client's wait of {sequential.workload.wait_timeout_s:g} s. "
        "Made by `durosim report`.",
        "",
    ]
    if interrupted:
        lines += ["**Interrupted** (Ctrl-C): the sections below are what finished.", ""]
    if results:
        top = max(results)
        lines += [*remedies_table(results), "", stored_procedures_line(results), ""]
        lines += ["## Claims the simulation contradicts", ""]
        lines += [*claims(results[top], stress_result), ""]
    captions = {
        "options.png": f"what-ifs at {max(results, default=0):g} ms",
        "breakdown.png": f"where the time goes at {max(results, default=0):g} ms",
        "versus_rtt.png": "latency and throughput against RTT",
    }
    if figures:
        lines += ["## Figures", ""]
        for figure in figures:
            lines += [f"![{captions[figure.name]}]({figure.name})", ""]
    return lines
