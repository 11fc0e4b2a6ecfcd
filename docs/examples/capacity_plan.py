"""A capacity plan for your own service, end to end, from Python.

The service: checkout orders (validate, charge with retry, reserve stock at two warehouses, a
sub-orchestration for the receipt) and status lookups (one activity), three to one, against a
database 30 ms away. The questions: how many orders a second one runtime node carries with the
orders' p95 under 3 s, what a second node or dropping the pool's ping buys, and where the time
of an order goes.

    python docs/examples/capacity_plan.py [OUT_DIR]

Writes the scenario, the results (JSON) and the capacity figure into OUT_DIR (default:
./capacity-plan). Runs in about half a minute; CI runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import durosim

SCENARIO = """
name = "checkout"
description = "checkout orders and status lookups, 3:1, a database 30 ms away"
replications = 3

[network]
rtt_ms = 30

[[workload.workflows]]
name = "order"
weight = 3
steps = [
  { kind = "activity", duration_ms = 10 },
  { kind = "activity", duration_ms = 60, failure_rate = 0.05, max_attempts = 3 },
  { kind = "fanout", n = 2, duration_ms = 20 },
  { kind = "sub_orchestration", workflow = "receipt" },
]

[[workload.workflows]]
name = "receipt"
steps = [ { kind = "activity", duration_ms = 15 } ]

[[workload.workflows]]
name = "lookup"
weight = 1
steps = [ { kind = "activity", duration_ms = 5 } ]
"""


def main(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "checkout.toml"
    path.write_text(SCENARIO, encoding="utf-8")

    # Today, at a modest load: latency per workflow and where an order's time goes.
    today = durosim.run(durosim.load(path, {"workload.mode": "open",
                                            "workload.arrival_rate_per_s": 0.5,
                                            "workload.duration_s": 60}))  # fmt: skip
    report = today.to_dict()

    # The highest arrival rate with the orders' p95 under 3 s, on one node and on two.
    plan = {}
    for nodes in (1, 2):
        scenario = durosim.load(path, {"host.nodes": nodes})
        found = durosim.capacity(scenario, "order:p95<3s", replications=2, duration_s=40.0)
        plan[f"{nodes} node(s)"] = found.to_dict()["max_rate_per_s"]
        if nodes == 1:
            from durosim.plots.capacity import throughput_latency

            throughput_latency(found.to_dict(), "checkout").savefig(out / "capacity.png", dpi=100)

    # What-ifs at that load, on common random numbers.
    options = durosim.compare(
        durosim.load(path, {"workload.count": 30}), ["no_pool_ping", "pool_size=20"],
        replications=3,
    )  # fmt: skip

    results = {
        "workflows": report["workflows"],
        "order_breakdown_ms": report["breakdown_ms"],
        "capacity_per_s": plan,
        "what_ifs": {
            row["option"]: row["latency_ms"]["p95"] for row in options.to_dict()["rows"]
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    found = main(Path(sys.argv[1] if len(sys.argv) > 1 else "capacity-plan"))
    for nodes, rate in found["capacity_per_s"].items():
        print(f"{nodes}: up to {rate} orders+lookups a second with the orders' p95 under 3 s")
    for option, p95 in found["what_ifs"].items():
        print(f"{option:<14} p95 {p95:.0f} ms")
