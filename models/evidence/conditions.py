"""A trace's `conditions`: what a run was, in one set of keys that every writer of a trace uses
(`durosim record`, `durosim run --trace`, `durosim ingest`) and `durosim validate` reads back
into a scenario.

    {"runtime": "duroxide-0.2", "rtt_ms": 50.76, "fanout": 5, "activity_ms": 0.0,
     "orchestration_concurrency": 2, "worker_concurrency": 2, "poll_interval_ms": 100,
     "pool_size": 10, "mode": "sequential", "in_flight": 1}
"""

from __future__ import annotations

from durosim.model.scenario import Scenario
from durosim.sim.config import to_table, toml_value

# Conditions the simulation reproduces: the condition's key -> the scenario key it sets.
SCENARIO_KEYS = {
    "runtime": "runtime",
    "rtt_ms": "network.rtt_ms",
    "fanout": "workload.fanout",
    "activity_ms": "workload.activity_ms",
    "orchestration_concurrency": "runtime_options.orchestration_concurrency",
    "worker_concurrency": "runtime_options.worker_concurrency",
    "poll_interval_ms": "runtime_options.dispatcher_poll_interval_ms",
    "pool_size": "pool.size",
    "mode": "workload.mode",
    "in_flight": "workload.in_flight",
    "duration_s": "workload.duration_s",
    "arrival_rate_per_s": "workload.arrival_rate_per_s",
    "wait_timeout_ms": "workload.wait_timeout_ms",
    "nodes": "host.nodes",
    "client_nodes": "host.client_nodes",
    "database_cores": "database.cores",
}
# Conditions that describe the run and are not simulated.
DESCRIPTIVE_KEYS = ("database", "rtt_nominal_ms", "rtt_source", "faults")
# Conditions that are whole tables of the scenario's [workload]: the workflows, as in the TOML.
WORKLOAD_TABLES = ("workflows",)


def conditions(**values: object) -> dict:
    """The conditions of a run, in the canonical key order; values that are None are left out.
    A key that is neither simulated nor descriptive is a programming error."""
    unknown = set(values) - set(SCENARIO_KEYS) - set(DESCRIPTIVE_KEYS) - set(WORKLOAD_TABLES)
    if unknown:
        raise ValueError(f"unknown trace conditions: {', '.join(sorted(unknown))}")
    order = list(SCENARIO_KEYS) + list(WORKLOAD_TABLES) + list(DESCRIPTIVE_KEYS)
    return {key: values[key] for key in order if values.get(key) is not None}


def of_scenario(s: Scenario) -> dict:
    """The conditions of a simulated run of `s`."""
    o, w = s.runtime_options, s.workload
    return conditions(
        runtime=s.runtime,
        rtt_ms=s.network.rtt.mean * 1000.0,
        fanout=w.fanout,
        activity_ms=w.activity.mean * 1000.0,
        orchestration_concurrency=o.orchestration_concurrency,
        worker_concurrency=o.worker_concurrency,
        poll_interval_ms=o.dispatcher_poll_interval_s * 1000.0,
        pool_size=s.pool.size,
        mode=w.mode,
        in_flight=1 if w.mode in ("sequential", "open") else w.in_flight,
        duration_s=w.duration_s if w.mode in ("stress", "open") else None,
        arrival_rate_per_s=w.arrival_rate_per_s if w.mode == "open" else None,
        wait_timeout_ms=w.wait_timeout_s * 1000.0,
        nodes=s.host.nodes,
        client_nodes=s.host.client_nodes,
        database_cores=s.database.cores,
        workflows=[to_table(f) for f in w.workflows] or None,
    )


def overrides(values: dict, rtt_ms: float | None = None) -> list[str]:
    """`--set` overrides that make a scenario run under these conditions (`rtt_ms` replaces the
    recorded RTT, for --infer rtt)."""
    out = []
    for key, target in SCENARIO_KEYS.items():
        value = rtt_ms if key == "rtt_ms" and rtt_ms is not None else values.get(key)
        if value is not None:
            out.append(f"{target}={toml_value(value)}")
    return out
