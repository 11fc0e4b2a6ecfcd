"""The two duroxide runtimes durosim models, and how they differ, each difference with its source.

- `duroxide-0.2`: today's PyPI `duroxide` 0.2.2 (Rust core 0.1.32, duroxide-pg 0.1.37, sqlx 0.8.6),
  the runtime of the lab traces.
- `duroxide-2025-11`: the runtime the published duroxide-pg stress results used (core
  affandar/duroxide@8e0952e9, duroxide-pg microsoft/duroxide-pg@c96aa2bf, November 2025).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RuntimeName = Literal["duroxide-0.2", "duroxide-2025-11"]
RUNTIMES: tuple[str, ...] = ("duroxide-0.2", "duroxide-2025-11")


@dataclass(frozen=True, slots=True)
class RuntimeProfile:
    name: str
    idle: Literal["min_poll_interval", "sleep_after_empty"]
    """How an idle dispatcher waits: sleep the rest of `dispatcher_poll_interval_ms` counted from
    the start of the empty fetch (core cb99eee onwards, dx-cur `orchestration.rs:390-516`), or
    sleep the whole interval after it (dx-seed `runtime/mod.rs:405-447`, also after an error)."""
    empty_orchestration_retries: int
    """Extra attempts of an empty `fetch_orchestration_item` inside the provider (pg-seed
    `provider.rs:209-297`: 3 more, 10 ms apart; removed in duroxide-pg b7f0ad3)."""
    empty_retry_sleep_s: float
    client_check: tuple[str, ...]
    """Provider calls of one client status check: `read` then `get_custom_status` since core
    738d00b (dx-cur `client/mod.rs:622-664`); `read` alone at the seed (`client/mod.rs:384`)."""
    fetch_contention: Literal["skip", "advisory", "deadlock"]
    """What two concurrent `fetch_orchestration_item` calls aimed at one instance do. Today
    ("advisory") the procedure's first select finds the oldest visible message of an instance
    with no committed lock, takes `pg_advisory_xact_lock(hashtext(instance))`, which it holds to
    the end of its transaction, and re-checks with SKIP LOCKED: a second fetch that found the
    same instance before the first committed waits for the first's commit (and for every fetch
    queued on the lock before it), re-checks, finds the instance locked and moves on (the
    procedure as the PyPI wheel's duroxide-pg 0.1.37 installs it, read from the live schema;
    duroxide-pg 4dc60a9, migrations 0017/0019). With many pollers these waits form a convoy:
    a recording with 9 nodes polling every 10 ms on one core had 6.5 backends waiting on that
    lock at any moment. "skip": the second moves on at once, no wait. At the seed, the second
    locked another message row of the same instance and then waited on the first's
    `instance_locks` insert while the first waited on that row: a deadlock PostgreSQL breaks
    after `deadlock_timeout`, failing the second (pg-seed `migrations/0002`, lines 362-394;
    fixed in 4dc60a9, "fix: deadlock in fetch_orchestration_item")."""
    call_overhead_s: float
    """Client-side time per provider call, calibrated: about 1 ms in the Python SDK over the Rust
    core (`docs/reference/mechanisms.md`); the 2025-11 stress test was pure Rust."""


PROFILES: dict[str, RuntimeProfile] = {
    "duroxide-0.2": RuntimeProfile(
        name="duroxide-0.2",
        idle="min_poll_interval",
        empty_orchestration_retries=0,
        empty_retry_sleep_s=0.0,
        client_check=("fetch_history", "get_custom_status"),
        fetch_contention="advisory",
        call_overhead_s=0.001,
    ),
    "duroxide-2025-11": RuntimeProfile(
        name="duroxide-2025-11",
        idle="sleep_after_empty",
        empty_orchestration_retries=3,
        empty_retry_sleep_s=0.010,
        client_check=("fetch_history",),
        fetch_contention="deadlock",
        call_overhead_s=0.0002,
    ),
}
