"""Where an orchestration's time goes: its critical path, split by cause.

Every message (a start, an activity to run, a completion) carries the split of the time from the
orchestration's start to the moment the message was committed. When a call picks the message up,
the split is extended: the time before that call began is waiting (an idle dispatcher's poll
sleep, a slot still busy with other work, or the client's back-off), and the part of the call
after the message was ready is split into pool wait, network, server and client-side overhead.
A turn takes several messages; the one that became ready last (or the instance's lock release)
is on the critical path. The parts add up exactly to the orchestration's latency. A durable
timer's delay is `timer` (its lateness, the fetch that finds it, is `poll_wait`), and the time an
orchestration's path waits for the client to raise an external event is `event_wait`; a
sub-orchestration's time is split the same way along the child's own path.
"""

from __future__ import annotations

from durosim.sim.db import CallTimes

PARTS = (
    "network",
    "server",
    "pool_wait",
    "poll_wait",
    "slot_busy",
    "client_backoff",
    "activity",
    "overhead",
    "timer",
    "event_wait",
)
(NETWORK, SERVER, POOL_WAIT, POLL_WAIT, SLOT_BUSY, CLIENT_BACKOFF, ACTIVITY, OVERHEAD, TIMER,
 EVENT_WAIT) = range(10)  # fmt: skip

Path = list[float]


def empty() -> Path:
    return [0.0] * len(PARTS)


def extend(
    path: Path,
    since: float,
    call: CallTimes,
    to_commit: bool,
    waiting: int = POLL_WAIT,
    busy_until: float = 0.0,
) -> Path:
    """The path from `since` through `call`, up to its commit or to its end."""
    out = path.copy()
    start, acquired, at_server, commit, reply, end = call
    stop = commit if to_commit else end
    if start > since:
        gap = start - since
        if busy_until > since:
            busy = (busy_until if busy_until < start else start) - since
            out[SLOT_BUSY] += busy
            gap -= busy
        out[waiting] += gap
    for lo, hi, part in (
        (start, acquired, POOL_WAIT),
        (acquired, at_server, NETWORK),
        (at_server, commit, SERVER),
        (commit, reply, NETWORK),
        (reply, end, OVERHEAD),
    ):
        if lo < since:
            lo = since
        if hi > stop:
            hi = stop
        if hi > lo:
            out[part] += hi - lo
    return out
