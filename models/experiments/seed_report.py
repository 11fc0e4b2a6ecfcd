"""`durosim report`: the seed analysis (docs/seed/REMOTE_PERFORMANCE_ANALYSIS.md) answered point
by point: each remedy's estimate there beside its simulated effect at 150 ms, 70 ms and locally,
the claims the simulation contradicts with the reason, and the figures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from durosim.experiments.compare import compare
from durosim.experiments.results import run_replications, summarize
from durosim.model.scenario import Scenario
from durosim.model.whatif import apply
from durosim.sim.dist import Const

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


def _at_rtt(scenario: Scenario, rtt_ms: float) -> Scenario:
    return replace(scenario, network=replace(scenario.network, rtt=Const(rtt_ms / 1000.0)),
                   name=f"{scenario.name} @ {rtt_ms:g} ms")  # fmt: skip


def _effect(row: dict) -> str:
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
        f"{results[r]['rows'][0]['latency_ms']['mean']:.0f} ms; "
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
        parts.append(f"{(1 - with_sp / without) * 100:.0f}% at {rtt:g} ms")
    return (
        "Stored procedures: the latency they save against the provider before them (fetch 7 "
        "statements, ack 8 plus one per history event) is " + ", ".join(parts) +
        "; the analysis estimated 46%."
    )  # fmt: skip


def claims(sequential: dict, stress: dict | None) -> list[str]:
    """The analysis's claims the simulation contradicts, each with the reason."""
    base = sequential["rows"][0]
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
    if stress is not None:
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


def build(sequential: Scenario, stress: Scenario | None, rtts: tuple[float, ...],
          replications: int, out: Path) -> Path:  # fmt: skip
    from durosim.plots.whatif import breakdown_bars, options_side_by_side, versus_rtt

    out.mkdir(parents=True, exist_ok=True)
    specs = [spec for spec, _, _ in REMEDIES]
    results = {rtt: compare(_at_rtt(sequential, rtt), specs, replications) for rtt in rtts}
    stress_result = compare(stress, [], replications) if stress is not None else None
    top = max(rtts)
    options_side_by_side(results[top]).savefig(out / "options.png", dpi=110)
    breakdown_bars(results[top]).savefig(out / "breakdown.png", dpi=110)
    points = []
    for rtt in SWEEP_RTTS_MS:
        base = _at_rtt(sequential, rtt)
        for spec in ("baseline", *(x for x in specs if x != "colocate")):  # colocate fixes RTT
            variant = base if spec == "baseline" else apply(base, spec)
            row = summarize(variant, run_replications(variant, max(2, replications // 2))).to_dict()
            points.append({"option": spec, "rtt_ms": rtt, **row})
    versus_rtt(points).savefig(out / "versus_rtt.png", dpi=110)
    lines = [
        "# The remote-performance analysis, simulated",
        "",
        f"Scenario: {sequential.name} ({sequential.runtime}), one orchestration at a time, "
        f"fan-out {sequential.workload.fanout}, "
        f"{sequential.runtime_options.orchestration_concurrency}:"
        f"{sequential.runtime_options.worker_concurrency}, pool {sequential.pool.size}; "
        f"{replications} replications on common random numbers. Each cell: mean latency (change "
        "against the baseline), throughput (change). Made by `durosim report`.",
        "",
        *remedies_table(results),
        "",
        stored_procedures_line(results),
        "",
        "## Claims the simulation contradicts",
        "",
        *claims(results[top], stress_result),
        "",
        "## Figures",
        "",
        f"![what-ifs at {top:g} ms](options.png)",
        "",
        f"![where the time goes at {top:g} ms](breakdown.png)",
        "",
        "![latency and throughput against RTT](versus_rtt.png)",
        "",
    ]
    page = out / "report.md"
    page.write_text("\n".join(lines), encoding="utf-8")
    return page
