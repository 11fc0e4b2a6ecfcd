"""A client-side connection pool (as sqlx 0.8's `Pool`): a fixed number of permits handed out
first come, first served, over connections opened lazily.

A caller takes a permit; if an idle connection exists it gets the one idle longest (sqlx keeps
idle connections in a FIFO queue), otherwise the pool opens a new one for it. A released
connection goes straight to the longest waiting caller, or back to the idle queue. What a caller
does with the connection (pings, statements) is the caller's business: see `durosim.sim.db`.
Left out: idle timeout and max lifetime (10 and 30 minutes in sqlx, beyond any run here).

The server's limit (`ConnectionLimit`, PostgreSQL's max_connections): a caller that gets a permit
while the pool has no idle connection opens a new one, and when the server refuses it ("too many
clients", SQLSTATE 53300, a transient error in the connect phase) sqlx keeps the permit and tries
again, backing off from 10 ms, until the acquire deadline (sqlx-core 0.8.6 `pool/inner.rs`
`acquire`, `connect`; `sqlx-postgres/src/error.rs` `is_transient_in_connect_phase`): `try_take`
and `acquire` then hand out `REFUSED` instead of a connection, the caller holds the permit to its
deadline and gives it back (`give_back`). Nothing here closes a connection, so once the server is
full a refused pool stays refused. A caller waiting for a permit waits at most until its acquire
deadline too (`acquire(caller, timeout_s)`): sqlx's `acquire` runs under
`rt::timeout(acquire_timeout, ...)` from the permit on, and a caller still queued then leaves the
queue with `PoolTimedOut` (sqlx-core 0.8.6 `pool/inner.rs` `acquire`).

Releases after a delay (`release_later`: the ping sqlx sends on release, which keeps the
connection busy for one more round trip) take no simulation event of their own while no caller
waits, which is nearly always: each keeps its place in the event order (`Environment.reserve`)
and applies when the pool is next used or read, if that place has passed. When a caller starts
waiting, the releases still to come become events at their places, so the waiter gets its
connection exactly when it would have. The pool needs durosim's `Environment` for this.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heappop, heappush

import simpy
from simpy.events import NORMAL

from durosim.sim.kernel import Environment
from durosim.sim.stats import Level


class Connection:
    __slots__ = ("number", "prepared", "epoch")

    def __init__(self, number: int):
        self.number = number
        self.prepared: set[str] = set()
        self.epoch = 0
        """The server's outages begun when it was opened (a run with faults: `sim.faults`)."""


class _Refused:
    """A permit without a connection: the server refused to open one."""

    number = -1


REFUSED = _Refused()
_REFUSED_TAKE = (REFUSED, True)


class _TimedOut:
    """No permit by the acquire deadline: the caller left the queue without one."""

    number = -1


TIMED_OUT = _TimedOut()
_TIMED_OUT_TAKE = (TIMED_OUT, False)


class ConnectionLimit:
    """The server's limit on connections from all pools (PostgreSQL's `max_connections`)."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.open = 0

    def try_open(self) -> bool:
        if self.open >= self.maximum:
            return False
        self.open += 1
        return True


class Pool:
    def __init__(
        self,
        env: Environment,
        size: int,
        min_connections: int = 1,
        limit: ConnectionLimit | None = None,
    ):
        if size < 1:
            raise ValueError("a pool needs at least one connection")
        self.env = env
        self.size = size
        self.limit = limit if limit is not None else ConnectionLimit(size)
        self.opened = 0
        while self.opened < min(min_connections, size) and self.limit.try_open():
            self.opened += 1
        self.idle: deque[Connection] = deque(Connection(i) for i in range(self.opened))
        self._in_use = 0
        self.waiters: deque[tuple[simpy.Event, str, float]] = deque()
        """Callers waiting for a permit, first come first: (their event, who, their deadline)."""
        self._expiry: simpy.Event | None = None
        self._expiry_at = math.inf
        self._occupancy = Level()
        self.queue_by_caller: dict[str, Level] = {}
        """Callers waiting for a permit, by the caller `acquire` was given (their sum is the
        pool's queue)."""
        self.measured_from = 0.0
        self.refused = 0
        """Permits handed out without a connection because the server was full."""
        self.timed_out = 0
        """Callers that left the queue at their acquire deadline without a permit."""
        self._releasing: list[tuple[float, int, int, Connection]] = []
        """Releases not applied yet, as a heap: each at its place in the event order."""
        env.defer(self._schedule_releases)

    @property
    def in_use(self) -> int:
        """Permits taken now."""
        if self._releasing:
            self._settle()
        return self._in_use

    @property
    def occupancy(self) -> Level:
        """Permits taken over time."""
        if self._releasing:
            self._settle()
        return self._occupancy

    def try_take(self) -> tuple[Connection, bool] | None:
        """A connection at once if there is a permit and an idle or openable connection;
        (REFUSED, True) for a permit whose new connection the server refuses; None: wait."""
        if self._releasing:
            self._settle()
        if self._in_use < self.size:
            if self.idle or self.limit.try_open():
                return self._take()
            self._in_use += 1
            self._occupancy.set(self.env._now, self._in_use)
            self.refused += 1
            return _REFUSED_TAKE
        return None

    def give_back(self) -> None:
        """Return a refused caller's permit: the next waiter takes it and opens a connection,
        or is refused in turn."""
        if self._releasing:
            self._settle()
        if self.waiters:
            ready = self._next_waiter()
            if self.limit.try_open():
                ready.succeed((self._open(), True))
            else:
                self.refused += 1
                ready.succeed(_REFUSED_TAKE)
            return
        self._in_use -= 1
        self._occupancy.set(self.env._now, self._in_use)

    def acquire(self, caller: str = "", timeout_s: float | None = None):
        """Generator: wait for a permit; return (connection, newly_opened), or (TIMED_OUT,
        False) when none came within `timeout_s` (None: wait for ever). `caller` names who
        asks, for the waiting time by caller."""
        taken = self.try_take()
        if taken is not None:
            return taken
        env = self.env
        ready = env.event()
        deadline = math.inf if timeout_s is None else env._now + timeout_s
        self.waiters.append((ready, caller, deadline))
        self._schedule_releases()  # one of them will serve this caller: it needs their events
        level = self.queue_by_caller.get(caller)
        if level is None:
            level = self.queue_by_caller[caller] = Level(0.0, self.measured_from)
        level.set(env._now, level.value + 1)
        if deadline < self._expiry_at:
            self._arm_expiry(deadline)
        got = yield ready
        if type(got) is tuple:  # from give_back: a new connection, or refused again
            return got
        return got, False

    def _arm_expiry(self, at: float) -> None:
        """One timer per pool for the waiters' deadlines, at the earliest: a waiter served
        before its deadline leaves it be, and when it fires it finds nothing due and is set
        for the next (one event per deadline reached, not one per waiter)."""
        self._expiry_at = at
        self._expiry = timer = self.env.event_at((at, NORMAL, next(self.env._eid)))
        timer.callbacks.append(self._expire_due)

    def _expire_due(self, timer: simpy.Event) -> None:
        """The waiters whose acquire deadline has come leave the queue without a permit."""
        if timer is not self._expiry:
            return  # superseded by an earlier deadline
        self._expiry, self._expiry_at = None, math.inf
        now = self.env._now
        due = [waiter for waiter in self.waiters if waiter[2] <= now]
        for waiter in due:
            ready, caller, _ = waiter
            self.waiters.remove(waiter)
            level = self.queue_by_caller[caller]
            level.set(now, level.value - 1)
            self.timed_out += 1
            ready.succeed(_TIMED_OUT_TAKE)
        if self.waiters:
            soonest = min(waiter[2] for waiter in self.waiters)
            if soonest < math.inf:
                self._arm_expiry(soonest)

    def reset(self, now: float) -> None:
        """Start averaging occupancy and queue afresh from `now` (after a warm-up)."""
        self.measured_from = now
        self.occupancy.reset(now)  # after the releases before now
        for level in self.queue_by_caller.values():
            level.reset(now)

    def queue_mean(self, now: float) -> float:
        """Callers waiting for a permit on average since the last reset."""
        return sum(level.mean(now) for level in self.queue_by_caller.values())

    def _take(self) -> tuple[Connection, bool]:
        """Hand out an idle connection, or a new one (the caller has checked the limit)."""
        self._in_use += 1
        self._occupancy.set(self.env._now, self._in_use)
        if self.idle:
            return self.idle.popleft(), False
        return self._open(), True

    def _open(self) -> Connection:
        """A new connection (the caller has checked the limit)."""
        connection = Connection(self.opened)
        self.opened += 1
        return connection

    def _next_waiter(self) -> simpy.Event:
        """The longest waiting caller's event, taken off the queue."""
        ready, caller, _ = self.waiters.popleft()
        level = self.queue_by_caller[caller]
        level.set(self.env._now, level.value - 1)
        return ready

    def release(self, connection: Connection) -> None:
        """Give `connection` back now: to the longest waiting caller, or to the idle queue."""
        if self._releasing:
            self._settle()  # the releases due before this one come first
        if self.waiters:
            self._next_waiter().succeed(connection)
            return
        self._in_use -= 1
        self._occupancy.set(self.env._now, self._in_use)
        self.idle.append(connection)

    def release_later(self, delay: float, connection: Connection) -> None:
        """Release `connection` after `delay`, when a Timeout made now would; without an event
        unless a caller is waiting."""
        place = self.env.reserve(delay)
        if self.waiters:
            self._release_at(place, connection)
        else:
            heappush(self._releasing, (*place, connection))

    def _settle(self) -> None:
        """Apply the releases whose events would have been processed by now."""
        releasing = self._releasing
        has_passed = self.env.has_passed
        while releasing and has_passed(releasing[0]):
            at, _, _, connection = heappop(releasing)
            self._in_use -= 1
            self._occupancy.set(at, self._in_use)
            self.idle.append(connection)

    def _schedule_releases(self) -> None:
        """Apply the releases due, and make every one still to come an event at its place."""
        self._settle()
        for at, priority, eid, connection in self._releasing:
            self._release_at((at, priority, eid), connection)
        self._releasing.clear()

    def _release_at(self, place: tuple[float, int, int], connection: Connection) -> None:
        self.env.event_at(place).callbacks.append(lambda _event: self.release(connection))
