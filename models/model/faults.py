"""Faults in a scenario (`[[faults]]`), each a window of time from the run's start:

- `kind = "database"`: the server is down from `start_s` for `duration_s` (a failover, a
  restart). Every connection open at the start is broken; a statement that reaches the server
  while it is down fails; a new connection is refused until it is back, and sqlx keeps trying
  (backing off from 10 ms, doubling, to a fifth of the acquire timeout) until its acquire
  deadline (`durosim.sim.db`).
- `kind = "link"`: the network between the runtime and the database holds every message sent in
  the window until the window ends (a partition TCP survives), or, with `added_ms`, adds that
  much to each round trip, or, with `loss_pct`, loses that share of the messages, each resent
  after TCP's retransmission timeout (Linux `TCP_RTO_MIN`, 200 ms, doubling on each loss).
  `node` limits it to one node's link.
- `kind = "node"`: runtime node `node` (1 is the first) crashes at `start_s`: its slots stop,
  nothing it had fetched is acknowledged, and what it had locked becomes visible again only when
  the lock expires (`runtime_options.orchestrator_lock_timeout_ms`, `worker_lock_timeout_ms`).
  With `duration_s` a fresh node (new pool, new slots) starts that much later.

Results over time (`timeline`): latency and throughput per bucket of the run, the backlog, the
time until the latency is back under an objective after the last fault ended, and activities
run more than once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from durosim.sim.config import ConfigError
from durosim.sim.stats import percentile


def _not_negative(value: float | None) -> str | None:
    return None if value is None or value >= 0 else f"must be >= 0, got {value}"


def _positive(value: float | None) -> str | None:
    return None if value is None or value > 0 else f"must be > 0, got {value}"


def _percent(value: float) -> str | None:
    return None if 0 <= value < 100 else f"must be >= 0 and < 100, got {value}"


def _bucket(value: float) -> str | None:
    return (
        None
        if value >= MIN_BUCKET_S
        else f"must be >= {MIN_BUCKET_S * 1000:g} ms, got {value * 1000:g} ms"
    )


MIN_BUCKET_S = 0.01
"""The narrowest bucket: finer tells nothing a p95 can, and a run's buckets must fit in memory."""


def _node(value: int | None) -> str | None:
    return None if value is None or value >= 1 else f"must be >= 1 (the first node), got {value}"


@dataclass(frozen=True, slots=True)
class Fault:
    kind: Literal["database", "link", "node"]
    start_s: float = field(metadata={"check": _not_negative})
    """When it starts, from the run's start (the first orchestration's)."""
    duration_s: float | None = field(default=None, metadata={"check": _positive})
    """How long it lasts; a node crash without one never comes back."""
    node: int | None = field(default=None, metadata={"check": _node})
    """`node`: the node that crashes; `link`: the one node whose link it is (unset: every one)."""
    added_s: float | None = field(default=None, metadata={"check": _positive})
    """`link`: added to each round trip in the window, instead of holding every message."""
    loss_pct: float = field(default=0.0, metadata={"check": _percent})
    """`link`: share of the messages lost in the window, instead of holding every message."""
    connect: Literal["refused", "closed"] = "refused"
    """`database`: how a new connection fails while it is down: `refused` (nothing listens:
    sqlx retries from 10 ms, doubling, until its 30 s acquire deadline) or `closed` (a proxy or
    load balancer in front accepts it and closes it: sqlx fails the call at once, an error
    duroxide-pg takes as permanent)."""

    @property
    def end_s(self) -> float:
        return math.inf if self.duration_s is None else self.start_s + self.duration_s

    @property
    def resource(self) -> str:
        """What it takes down: the database, one node's link (or all), one node."""
        if self.kind == "database":
            return "the database"
        if self.kind == "link":
            return "every link" if self.node is None else f"node {self.node}'s link"
        return f"node {self.node}"

    def describe(self) -> str:
        until = "" if self.duration_s is None else f" for {self.duration_s:g} s"
        if self.kind == "link" and self.added_s is not None:
            what = f"{self.resource} +{self.added_s * 1000:g} ms RTT"
        elif self.kind == "link" and self.loss_pct:
            what = f"{self.resource} loses {self.loss_pct:g}%"
        elif self.kind == "link":
            what = f"{self.resource} holds all traffic"
        elif self.kind == "database":
            what = "the database is down"
        else:
            what = f"node {self.node} crashes" + ("" if self.duration_s else " (no restart)")
        return f"at {self.start_s:g} s {what}{until}"


HORIZON_S = 1e8
"""The latest a fault may end. A link held to its window's end moves the clock there, and a
clock at 1e300 s cannot add the milliseconds a call takes (the run would never end); at 1e8 s a
double still resolves 15 ns."""


def check_faults(
    faults: tuple[Fault, ...], nodes: int, client_nodes: int, run_s: float | None
) -> None:
    """Raise ConfigError for the first fault that cannot apply: a missing duration, a node that
    does not exist or runs the clients, a start past the run, two faults overlapping on one
    resource."""
    for i, fault in enumerate(faults):
        where = f"faults[{i}]"
        if fault.kind in ("database", "link") and fault.duration_s is None:
            raise ConfigError(f"{where}: a {fault.kind} fault needs duration_s (or duration_ms)")
        if fault.kind == "node" and fault.node is None:
            raise ConfigError(f"{where}: a node fault needs node = N (1..{nodes})")
        if fault.kind != "link" and (fault.added_s is not None or fault.loss_pct):
            raise ConfigError(f"{where}: added_ms and loss_pct apply to link faults only")
        if fault.kind == "link" and fault.added_s is not None and fault.loss_pct:
            raise ConfigError(f"{where}: a link fault adds latency or loses messages, not both")
        if fault.kind == "database" and fault.node is not None:
            raise ConfigError(f"{where}: a database fault takes no node")
        if fault.kind != "database" and fault.connect != "refused":
            raise ConfigError(f"{where}: connect applies to database faults only")
        if fault.node is not None and fault.node > nodes:
            raise ConfigError(f"{where}: node {fault.node} does not exist; host.nodes is {nodes}")
        if fault.kind == "node" and fault.node <= client_nodes:
            raise ConfigError(
                f"{where}: node {fault.node} runs clients (host.client_nodes = {client_nodes}); "
                f"crash a node above {client_nodes}, or set host.client_nodes lower"
            )
        last = (fault.end_s if math.isfinite(fault.end_s) else fault.start_s) + (fault.added_s or 0)
        if last > HORIZON_S:
            raise ConfigError(
                f"{where}: reaches {last:g} s; faults must end within {HORIZON_S:g} s "
                "(about three years), where the simulated clock still tells microseconds apart"
            )
        if run_s is not None and fault.start_s >= run_s:
            raise ConfigError(
                f"{where}: starts at {fault.start_s:g} s, after the run's {run_s:g} s of arrivals"
            )
    for i, a in enumerate(faults):
        for j in range(i + 1, len(faults)):
            b = faults[j]
            shared = a.node == b.node or (a.kind == "link" and None in (a.node, b.node))
            same = a.kind == b.kind and (a.kind == "database" or shared)
            if same and a.start_s < b.end_s and b.start_s < a.end_s:
                raise ConfigError(
                    f"faults[{i}] and faults[{j}] overlap on {a.resource}: "
                    f"{a.describe()}; {b.describe()}"
                )


@dataclass(frozen=True, slots=True)
class Recovery:
    """`[recovery]`: how results over time are cut and judged in a run with faults."""

    bucket_s: float = field(default=1.0, metadata={"check": _bucket})
    """The width of a bucket of time."""
    slo_s: float | None = field(default=None, metadata={"check": _positive})
    """The p95 latency the recovery time waits for; unset: twice the p95 before the first
    fault."""


@dataclass(frozen=True, slots=True)
class Bucket:
    start_s: float
    started: float
    completed: float
    failed: float
    mean_ms: float
    p95_ms: float
    backlog: float
    """Orchestrations started and not yet ended at the bucket's end."""

    def as_json(self) -> dict:
        return {
            "start_s": self.start_s,
            "started": round(self.started, 2),
            "completed": round(self.completed, 2),
            "failed": round(self.failed, 2),
            "mean_ms": None if math.isnan(self.mean_ms) else round(self.mean_ms, 2),
            "p95_ms": None if math.isnan(self.p95_ms) else round(self.p95_ms, 2),
            "backlog": round(self.backlog, 2),
        }


Run = tuple[float, float | None, bool]
"""An orchestration: its start, its end (None: it never ended) and whether it failed."""


def buckets(runs: list[Run], width_s: float, until_s: float, per: int = 1) -> list[Bucket]:
    """Per bucket of `width_s` from 0 to `until_s`: orchestrations (start, end or None, failed),
    their latency by the bucket they started in, completions by the bucket they ended in;
    counts divided by `per` (the replications pooled in `runs`)."""
    count = max(1, math.ceil(until_s / width_s))
    latencies: list[list[float]] = [[] for _ in range(count)]
    started, completed, failed = [0] * count, [0] * count, [0] * count
    for start, end, did_fail in runs:
        k = int(start // width_s)
        if 0 <= k < count:
            started[k] += 1
            if end is not None and not did_fail:
                latencies[k].append((end - start) * 1000.0)
        if end is not None:
            e = int(end // width_s)
            if 0 <= e < count:
                if did_fail:
                    failed[e] += 1
                else:
                    completed[e] += 1
    out = []
    backlog = 0  # started by the bucket's end and not ended before it, a running sum
    for k in range(count):
        backlog += started[k] - completed[k] - failed[k]
        values = latencies[k]
        out.append(
            Bucket(
                round(k * width_s, 6), started[k] / per, completed[k] / per, failed[k] / per,
                sum(values) / len(values) if values else math.nan,
                percentile(values, 95) if values else math.nan,
                backlog / per,
            )
        )  # fmt: skip
    return out


def recovery_s(
    series: list[Bucket], width_s: float, fault_start_s: float, fault_end_s: float, slo_ms: float
) -> float:
    """Seconds from the end of the fault until orchestrations start and finish within the
    objective again: the end of the last bucket, from the fault's start on, whose p95 is over it
    or none of whose orchestrations completed; 0 when none is after the fault's end; infinite
    when the last bucket anything started in is over it (it never recovered)."""
    last_bad = fault_end_s
    last_started = None
    for bucket in series:
        if bucket.started > 0:
            last_started = bucket
        if bucket.start_s + width_s <= fault_start_s:
            continue
        unfinished = bucket.started > 0 and math.isnan(bucket.p95_ms)
        if unfinished or bucket.p95_ms > slo_ms:
            last_bad = max(last_bad, bucket.start_s + width_s)
    if last_started is not None and last_bad >= last_started.start_s + width_s > fault_end_s:
        return math.inf
    return last_bad - fault_end_s


def default_slo_ms(runs: list[Run], first_fault_s: float) -> float:
    """Twice the p95 latency of the orchestrations that completed before the first fault (all of
    them if none did)."""
    before = [
        (e - s) * 1000.0 for s, e, bad in runs if e is not None and not bad and e < first_fault_s
    ]
    if not before:
        before = [(e - s) * 1000.0 for s, e, bad in runs if e is not None and not bad]
    return 2.0 * percentile(before, 95) if before else math.inf


def report(
    faults: tuple[Fault, ...], timeline: Recovery, per_run: list[list[Run]], reruns: list[float]
) -> dict:
    """What a scenario's faults did, over its replications: the faults, the objective, the
    recovery time (mean and each run's), activities run again per run, and the timeline (the
    runs pooled, counts per run)."""
    from durosim.sim.stats import mean_ci

    pooled = [r for runs in per_run for r in runs]
    first = min(f.start_s for f in faults)
    last_end = max(f.end_s for f in faults)
    slo = timeline.slo_s * 1000.0 if timeline.slo_s is not None else default_slo_ms(pooled, first)
    until = max([e for _, e, _ in pooled if e is not None] + [s for s, _, _ in pooled] + [last_end
                if math.isfinite(last_end) else first])  # fmt: skip
    width = timeline.bucket_s
    recoveries = []
    for runs in per_run:
        series = buckets(runs, width, until)
        end = last_end if math.isfinite(last_end) else first
        recoveries.append(recovery_s(series, width, first, end, slo))
    recovered = [x for x in recoveries if math.isfinite(x)]
    rec_mean, rec_ci = mean_ci(recovered) if len(recovered) == len(recoveries) else (math.inf, 0.0)
    rerun_mean, rerun_ci = mean_ci(reruns)
    return {
        "faults": [f.describe() for f in faults],
        "windows": [[f.start_s, None if f.duration_s is None else f.end_s] for f in faults],
        "bucket_s": width,
        "slo_ms": round(slo, 1),
        "recovery_s": _seconds(rec_mean),
        "recovery_ci_s": None if math.isnan(rec_ci) or math.isinf(rec_mean) else round(rec_ci, 2),
        "recovery_per_run_s": [_seconds(x) for x in recoveries],
        "recovered_runs": len(recovered),
        "activity_reruns_per_run": round(rerun_mean, 2),
        "activity_reruns_ci": None if math.isnan(rerun_ci) else round(rerun_ci, 2),
        "timeline": [b.as_json() for b in buckets(pooled, width, until, len(per_run))],
    }


def _seconds(value: float) -> float | None:
    """Seconds rounded, or None for a recovery that never came."""
    return None if math.isinf(value) else round(value, 2)
