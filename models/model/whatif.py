"""What-ifs: named, pure `Scenario -> Scenario` functions, one per remedy, combinable with `+`
(`colocate+long_poll`) and parameterised with `=` (`colocate=3`, `concurrency=4:4`).

Each function's docstring is its help text (`durosim options`). A what-if only changes the
scenario: a value (RTT, pool, slots, poll interval) or a field of its `Design`. The wiring
(`durosim.model.world`) hands the design to the pieces it concerns, and they take the matching
path where the designs differ: the dispatcher's wake-up strategy (long_poll), the pool's ping
(pipelining), the runtime's turn and activity steps (server_side_turns, pipelining,
activity_context_cached, batch_worker_fetch), the provider's statements per call
(no_stored_procedures) and the client's check (pipelining, no_client_polling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from durosim.model.scenario import Scenario
from durosim.sim.config import ConfigError
from durosim.sim.dist import Const


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    apply: Callable[[Scenario, str | None], Scenario]
    metavar: str | None
    default: str | None

    @property
    def help(self) -> str:
        return (self.apply.__doc__ or "").strip().splitlines()[0]

    @property
    def usage(self) -> str:
        if self.metavar is None:
            return self.name
        return f"{self.name}[={self.metavar}]" if self.default else f"{self.name}={self.metavar}"


def _number(name: str, text: str, kind: type = float, low: float = 0.0):
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"what-if {name}={text}: expected a {kind.__name__} value") from None
    if not math.isfinite(value) or value < low:
        raise ConfigError(f"what-if {name}={text}: must be a finite number >= {low:g}")
    return value


def _design(s: Scenario, **changes: object) -> Scenario:
    return replace(s, design=replace(s.design, **changes))


def colocate(s: Scenario, rtt_ms: str | None) -> Scenario:
    """Run the runtime next to the database: RTT 1 ms (or the one given)."""
    rtt = _number("colocate", rtt_ms or "1")
    return replace(s, network=replace(s.network, rtt=Const(rtt / 1000.0)))


def no_pool_ping(s: Scenario, _: str | None) -> Scenario:
    """The pool stops pinging connections on acquire and release (sqlx test_before_acquire)."""
    return replace(s, pool=replace(s.pool, ping_on_acquire=False, ping_on_release=False))


def batch_worker_fetch(s: Scenario, n: str | None) -> Scenario:
    """A worker fetch takes up to N work items (10) and one ack returns them (duroxide PR 17)."""
    size = _number("batch_worker_fetch", n or "10", int, 1)
    return _design(s, worker_batch_size=size)


def long_poll(s: Scenario, _: str | None) -> Scenario:
    """LISTEN/NOTIFY wake-ups (duroxide-pg-opt): empty fetches wait for a notify, then race."""
    return _design(s, long_poll=True)


def no_client_polling(s: Scenario, _: str | None) -> Scenario:
    """The client is told when the orchestration completes instead of polling its status."""
    return _design(s, client_notified=True)


def activity_context_cached(s: Scenario, _: str | None) -> Scenario:
    """The worker skips the history read (fetch_history) before each activity."""
    return _design(s, activity_context_read=False)


def pipelining(s: Scenario, _: str | None) -> Scenario:
    """Independent statements share round trips: ping+statement, client check, ack+next fetch."""
    return _design(s, pipelining=True)


def server_side_turns(s: Scenario, _: str | None) -> Scenario:
    """An orchestration turn runs inside the database: one call per turn instead of two."""
    return _design(s, server_side_turns=True)


def no_stored_procedures(s: Scenario, _: str | None) -> Scenario:
    """The provider before its stored procedures: fetch 7 statements, ack 8 + one per event."""
    return _design(s, stored_procedures=False)


def pool_size(s: Scenario, n: str | None) -> Scenario:
    """Set the connection pool's size (DUROXIDE_PG_POOL_MAX)."""
    return replace(s, pool=replace(s.pool, size=_number("pool_size", n or "", int, 1)))


def concurrency(s: Scenario, ow: str | None) -> Scenario:
    """Set the orchestration:worker dispatcher slots, e.g. concurrency=4:4."""
    parts = (ow or "").split(":")
    if len(parts) != 2:
        raise ConfigError(f"what-if concurrency={ow}: expected O:W, e.g. concurrency=4:4")
    o, w = (_number("concurrency", p, int, 1) for p in parts)
    options = replace(s.runtime_options, orchestration_concurrency=o, worker_concurrency=w)
    return replace(s, runtime_options=options)


def poll_interval(s: Scenario, ms: str | None) -> Scenario:
    """Set dispatcher_poll_interval_ms, the idle dispatchers' poll interval."""
    interval = _number("poll_interval", ms or "", float, 0.0) / 1000.0
    options = replace(s.runtime_options, dispatcher_poll_interval_s=interval)
    return replace(s, runtime_options=options)


def rtt(s: Scenario, ms: str | None) -> Scenario:
    """Set the round-trip time between the runtime and the database, in ms."""
    return replace(s, network=replace(s.network, rtt=Const(_number("rtt", ms or "") / 1000.0)))


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("colocate", colocate, "RTT_MS", "1"),
        Option("no_pool_ping", no_pool_ping, None, None),
        Option("batch_worker_fetch", batch_worker_fetch, "N", "10"),
        Option("long_poll", long_poll, None, None),
        Option("no_client_polling", no_client_polling, None, None),
        Option("activity_context_cached", activity_context_cached, None, None),
        Option("pipelining", pipelining, None, None),
        Option("server_side_turns", server_side_turns, None, None),
        Option("no_stored_procedures", no_stored_procedures, None, None),
        Option("pool_size", pool_size, "N", None),
        Option("concurrency", concurrency, "O:W", None),
        Option("poll_interval", poll_interval, "MS", None),
        Option("rtt", rtt, "MS", None),
    )
}


def apply(scenario: Scenario, spec: str) -> Scenario:
    """Apply `a+b=1+...` to a scenario; the result is named after the spec."""
    out = scenario
    for part in spec.split("+"):
        name, has_value, value = part.strip().partition("=")
        option = OPTIONS.get(name)
        if option is None:
            raise ConfigError(
                f"unknown what-if {name!r}; known: {', '.join(OPTIONS)} (see `durosim options`)"
            )
        if has_value and option.metavar is None:
            raise ConfigError(f"what-if {name} takes no value, got {part!r}")
        if not has_value and option.metavar is not None and option.default is None:
            raise ConfigError(f"what-if {name} needs a value: {option.usage}")
        out = option.apply(out, value if has_value else None)
    return replace(out, name=spec)
