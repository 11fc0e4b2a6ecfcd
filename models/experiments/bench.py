"""`durosim bench`: how fast the simulator is on this machine, each number against its target.

Kernel events are counted the same way everywhere: durosim's `Environment` (`durosim.sim.kernel`)
counts the events its run loop processes, one addition each, and raw SimPy's are counted by the
same environment. Events per second divide the count of one run by the median wall time of runs
of the same seed. The model's count falls when it needs fewer events for the same work (the pool's
release ping takes none), so its events per second are not a speed on their own: the production
measure, raw SimPy events per simulated orchestration, is.

Scaling compares CPU time (`time.process_time`), which another busy process on the machine does
not inflate; the sweep's speed-up is wall time, and its CPU time (this process and its workers)
is reported beside it, so a speed-up lost to other load shows as such. The load average at the
start is reported too.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable

import simpy

from durosim.experiments import sweep as sweeps
from durosim.model.scenario import Scenario, load, read_table, shipped
from durosim.model.world import _CountingEnvironment as CountingEnvironment
from durosim.model.world import simulate

TARGETS = {
    "model_to_simpy_ratio": (">=", 0.5, ""),
    "azure_152ms_stress_s": ("<=", 0.050, " s"),
    "scaling_time_ratio": ("<=", 11.0, "x"),
    "scaling_memory_bytes_per_orchestration": ("<=", 100.0, " B"),
    "sweep_speedup": (">=", 1.8, "x"),
    "production_simpy_events_per_orchestration": ("<=", 96.0, ""),
}
PRODUCTION_BEFORE = 480.0
"""Raw SimPy events per simulated orchestration of the production scenario before its speed-up
(5x faster is 96, 10x 48): see the README, "How big, how fast"."""


def mmc(env: simpy.Environment, servers: int, arrival_rate: float, service_rate: float, seed: int):
    """An M/M/c queue in plain SimPy: customers are processes holding a `simpy.Resource`."""
    rng = random.Random(seed)  # a local stream; raw SimPy, no numpy in the loop
    desk = simpy.Resource(env, capacity=servers)

    def customer():
        with desk.request() as turn:
            yield turn
            yield env.timeout(rng.expovariate(service_rate))

    def arrivals():
        while True:
            yield env.timeout(rng.expovariate(arrival_rate))
            env.process(customer())

    env.process(arrivals())


def _median_s(fn: Callable[[], object], repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        started = clock()
        fn()
        times.append(clock() - started)
    return statistics.median(times)


def simpy_speed(until_s: float, repeats: int) -> dict:
    """Raw SimPy: M/M/4 with lambda 3.2, mu 1 (utilisation 0.8)."""

    def run(env: simpy.Environment) -> simpy.Environment:
        mmc(env, 4, 3.2, 1.0, seed=1)
        env.run(until=until_s)
        return env

    events = run(CountingEnvironment()).events
    seconds = _median_s(lambda: run(simpy.Environment()), repeats)
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def model_speed(scenario: Scenario, repeats: int) -> dict:
    events = simulate(scenario, 0, keep_records=True).events
    seconds = _median_s(lambda: simulate(scenario, 0), repeats)
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def production_speed(duration_s: float, raw_events_per_s: float) -> dict:
    """The production scenario (20 nodes, 100 orchestrations/s, open loop) for `duration_s`
    of arrivals: its CPU time, and what one simulated orchestration costs in raw SimPy events
    (this CPU time times raw SimPy's event rate, so the machine's speed cancels out)."""
    scenario = load(
        shipped()["production"],
        [f"workload.duration_s={duration_s}", f"workload.warmup_s={min(10.0, duration_s / 7)}"],
    )
    started = time.process_time()
    run = simulate(scenario, 0)
    cpu_s = time.process_time() - started
    orchestrations = run.completed + run.failed
    return {
        "simulated_s": duration_s,
        "orchestrations": orchestrations,
        "cpu_s": cpu_s,
        "orchestrations_per_cpu_s": orchestrations / cpu_s,
        "simpy_events_per_orchestration": cpu_s * raw_events_per_s / orchestrations,
    }


COST_AXES = {
    "nodes": ("host.nodes", (1, 2, 5, 10, 20, 40)),
    "slots": ("runtime_options.worker_concurrency", (4, 8, 16, 32)),
    "rate": ("workload.arrival_rate_per_s", (10, 25, 50, 100, 200)),
    "simulated_s": ("workload.duration_s", (10, 20, 40, 80)),
}
"""How the cost of one replication of the production scenario grows: each axis varied alone.
Nodes carry 5 orchestrations/s each (the load grows with the deployment); slots are each node's
worker and orchestration slots together; simulated time includes the 2 s warm-up."""


def cost_curves(quick: bool = False, say: Callable[[str], None] | None = None) -> dict:
    """CPU seconds of one replication of the production scenario (14 s of arrivals) as nodes,
    slots, arrival rate and simulated time grow, one at a time; with the orchestrations and
    provider calls each point simulated."""
    base = ["workload.duration_s=14", "workload.warmup_s=2"]
    out: dict = {"base": "production, 14 s of arrivals (2 s warm-up), one replication"}
    for axis, (key, values) in COST_AXES.items():
        rows = []
        for value in values[:3] if quick else values:
            if say:
                say(f"cost: {axis} = {value}")
            extra = [f"{key}={value}"]
            if axis == "nodes":
                extra.append(f"workload.arrival_rate_per_s={5 * value}")
                extra.append(f"database.max_connections={10 * value}")
            if axis == "slots":
                extra.append(f"runtime_options.orchestration_concurrency={value}")
            scenario = load(shipped()["production"], base + extra)
            started = time.process_time()
            run = simulate(scenario, 0)
            rows.append(
                {
                    "value": value,
                    "cpu_s": round(time.process_time() - started, 3),
                    "orchestrations": run.completed + run.failed,
                    "calls": sum(run.calls.values()),
                }
            )
        out[axis] = rows
    return out


def _closed(count: int) -> Scenario:
    return load(
        shipped()["lab"],
        ['workload.mode="closed"', "workload.in_flight=4", f"workload.count={count}"],
    )


def _peak_bytes(scenario: Scenario) -> int:
    tracemalloc.start()
    try:
        simulate(scenario, 0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def scaling(count: int, repeats: int) -> dict:
    """A closed-mode scenario (lab, 4 in flight) with `count` and 10x `count` orchestrations: CPU
    time, and the tracemalloc peak. What may grow is the result, a latency and a start time per
    measured orchestration (about 64 bytes); the simulation's state may not."""
    small, large = _closed(count), _closed(count * 10)
    simulate(small, 0)  # warm caches and imports before timing
    small_s = _median_s(lambda: simulate(small, 0), repeats, time.process_time)
    large_s = _median_s(lambda: simulate(large, 0), repeats, time.process_time)
    small_peak, large_peak = _peak_bytes(small), _peak_bytes(large)
    return {
        "orchestrations": [count, count * 10],
        "small_cpu_s": small_s,
        "large_cpu_s": large_s,
        "time_ratio": large_s / small_s,
        "small_peak_bytes": small_peak,
        "large_peak_bytes": large_peak,
        "memory_ratio": large_peak / small_peak,
        "memory_bytes_per_orchestration": (large_peak - small_peak) / (count * 9),
    }


def sweep_speed(points: int, jobs: int, repeats: int) -> dict:
    """A sweep of `points` small points (lab, count 5, one replication, one RTT each) on 1 and on
    `jobs` local processes, CSV included: the median of `repeats` sweeps each."""
    source = str(shipped()["lab"])
    table = read_table(source)
    overrides = ["workload.count=10", "replications=1"]
    values = ",".join(f"{1 + 199 * i / max(1, points - 1):.3f}" for i in range(points))
    grid = sweeps.parse_grid([f"network.rtt_ms={values}"])
    out: dict = {"points": points, "jobs": jobs, "repeats": repeats}
    with tempfile.TemporaryDirectory() as folder:
        for n in (1, jobs):
            walls, cpus = [], []
            for repeat in range(repeats):
                csv_path = os.path.join(folder, f"sweep-{n}-{repeat}.csv")
                cpu_before = _cpu_s()
                with sweeps.executor("local", n) as runner:
                    result = sweeps.run_sweep(source, table, overrides, grid, csv_path, runner)
                walls.append(result.wall_s)
                cpus.append(_cpu_s() - cpu_before)
            out[f"jobs_{n}_s"] = statistics.median(walls)
            out[f"jobs_{n}_cpu_s"] = statistics.median(cpus)
            out[f"jobs_{n}_ms_per_point"] = out[f"jobs_{n}_s"] / points * 1000.0
    out["speedup"] = out["jobs_1_s"] / out[f"jobs_{jobs}_s"]
    return out


def _cpu_s() -> float:
    """CPU time of this process and of its finished child processes (the sweep's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _verdict(name: str, value: float) -> dict:
    op, target, unit = TARGETS[name]
    met = value >= target if op == ">=" else value <= target
    return {"value": value, "target": f"{op} {target:g}{unit}", "met": met}


def run_bench(quick: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda text: None)
    load_average = os.getloadavg()[0]
    repeats = 1 if quick else 5
    say("raw SimPy: M/M/4")
    raw = simpy_speed(1000.0 if quick else 30000.0, repeats)
    say("the model: azure-152ms and lab")
    azure = load(shipped()["azure-152ms"])
    lab = load(shipped()["lab"])
    simulate(azure, 0)  # warm up
    models = {"azure-152ms": model_speed(azure, repeats), "lab": model_speed(lab, repeats)}
    events = sum(m["events"] for m in models.values())
    seconds = sum(m["seconds"] for m in models.values())
    model_rate = events / seconds
    say("one replication of the azure-152ms stress test")
    stress_runs = [_median_s(lambda: simulate(azure, 0), 1) for _ in range(repeats)]
    say("the production scenario: 20 nodes, 100 orchestrations/s")
    production = production_speed(14.0 if quick else 70.0, raw["events_per_s"])
    say("scaling: 10x the orchestrations")
    scale = scaling(20 if quick else 200, 1 if quick else 3)
    say("sweep: 1 process and 2")
    sweep = sweep_speed(20 if quick else 200, 2, 1 if quick else 3)
    result = {
        "quick": quick,
        "cpus": os.cpu_count(),
        "load_average_at_start": load_average,
        "simpy_events_per_s": raw["events_per_s"],
        "model_events_per_s": model_rate,
        "model_to_simpy_ratio": model_rate / raw["events_per_s"],
        "azure_152ms_stress_s": statistics.median(stress_runs),
        "azure_152ms_stress_runs_s": stress_runs,
        "simpy": raw,
        "models": models,
        "production": production,
        "scaling": scale,
        "sweep": sweep,
    }
    result["targets"] = {
        "model_to_simpy_ratio": _verdict("model_to_simpy_ratio", result["model_to_simpy_ratio"]),
        "azure_152ms_stress_s": _verdict("azure_152ms_stress_s", result["azure_152ms_stress_s"]),
        "scaling_time_ratio": _verdict("scaling_time_ratio", scale["time_ratio"]),
        "scaling_memory_bytes_per_orchestration": _verdict(
            "scaling_memory_bytes_per_orchestration", scale["memory_bytes_per_orchestration"]
        ),
        "sweep_speedup": _verdict("sweep_speedup", sweep["speedup"]),
        "production_simpy_events_per_orchestration": _verdict(
            "production_simpy_events_per_orchestration",
            production["simpy_events_per_orchestration"],
        ),
    }
    return result


def render(r: dict) -> str:
    def met(name: str) -> str:
        t = r["targets"][name]
        return f"target {t['target']}: {'met' if t['met'] else 'NOT MET'}"

    s, sw, p = r["scaling"], r["sweep"], r["production"]
    parallel_s = sw[f"jobs_{sw['jobs']}_s"]
    parallel_ms = sw[f"jobs_{sw['jobs']}_ms_per_point"]
    parallel_cpu = sw[f"jobs_{sw['jobs']}_cpu_s"]
    lines = [
        f"durosim bench{' --quick (smoke test: not a result)' if r['quick'] else ''}, "
        f"{r['cpus']} CPUs, load average {r['load_average_at_start']:.2f} at the start",
        "",
        f"raw SimPy (M/M/4, lambda 3.2, mu 1)   {r['simpy_events_per_s']:>12,.0f} events/s",
    ]
    for name, m in r["models"].items():
        lines.append(
            f"model {name:<31} {m['events_per_s']:>12,.0f} events/s  "
            f"({m['events']} events in {m['seconds'] * 1000:.1f} ms)"
        )
    lines += [
        f"model, both                           {r['model_events_per_s']:>12,.0f} events/s",
        f"  model / raw SimPy                   {r['model_to_simpy_ratio']:>12.2f}  "
        f"{met('model_to_simpy_ratio')}",
        "",
        f"azure-152ms stress, one replication   {r['azure_152ms_stress_s'] * 1000:>9.1f} ms  "
        f"(median of {len(r['azure_152ms_stress_runs_s'])})  {met('azure_152ms_stress_s')}",
        "",
        f"production (20 nodes 4:4, 100/s open, {p['simulated_s']:g} s of arrivals)",
        f"  {p['orchestrations']} orchestrations in  {p['cpu_s']:>9.2f} s CPU  "
        f"{p['orchestrations_per_cpu_s']:,.0f} orchestrations a CPU second",
        f"  cost in raw SimPy events            {p['simpy_events_per_orchestration']:>9.1f} "
        f"an orchestration ({PRODUCTION_BEFORE / p['simpy_events_per_orchestration']:.1f}x "
        f"faster than before)  {met('production_simpy_events_per_orchestration')}",
        "",
        f"closed mode, {s['orchestrations'][0]} vs {s['orchestrations'][1]} orchestrations",
        f"  CPU time                            {s['small_cpu_s']:>9.3f} s vs "
        f"{s['large_cpu_s']:.3f} s = {s['time_ratio']:.2f}x  {met('scaling_time_ratio')}",
        f"  peak memory (tracemalloc)           {s['small_peak_bytes'] / 1e6:>9.3f} MB vs "
        f"{s['large_peak_bytes'] / 1e6:.3f} MB = {s['memory_ratio']:.2f}x",
        f"  growth per extra orchestration      {s['memory_bytes_per_orchestration']:>9.0f} B  "
        f"{met('scaling_memory_bytes_per_orchestration')}",
        "",
        f"sweep of {sw['points']} points (lab, count 10, 1 replication; median of {sw['repeats']})",
        f"  1 process                           {sw['jobs_1_s']:>9.3f} s  "
        f"{sw['jobs_1_ms_per_point']:.1f} ms a point, CPU {sw['jobs_1_cpu_s']:.3f} s",
        f"  {sw['jobs']} processes                         {parallel_s:>9.3f} s"
        f"  {parallel_ms:.1f} ms a point, CPU {parallel_cpu:.3f} s",
        f"  speed-up                            {sw['speedup']:>9.2f}x  {met('sweep_speedup')}",
    ]
    return "\n".join(lines)
