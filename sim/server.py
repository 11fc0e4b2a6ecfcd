"""A database server: a number of cores serving statements, first come, first served
(`DbServer`) or shared among the statements on it (`SharedServer`).

First come, first served: each operation has its own service-time distribution (the statement's
CPU and I/O on the server, without the network). Statements queue for a free core in arrival
order. Because the service time is drawn on arrival, the start and finish of a FIFO multi-core
queue are known at once: a heap of the cores' next free times gives them without any simulation
events of its own. Lock waits are not served here: they belong to the caller (the statement's
model), since a backend waiting on a lock holds no core.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from itertools import count

import numpy as np
from simpy.events import Event

from durosim.sim.dist import Const, Dist


class DbServer:
    shared = False
    """Whether statements run with `submit` (an event) rather than `admit` (a finish time)."""

    def __init__(
        self, cores: int, cost: Mapping[str, Dist], rng: np.random.Generator | None = None
    ):
        if cores < 1:
            raise ValueError("a server needs at least one core")
        self.cores = cores
        self.cost = dict(cost)
        self._free_at: list[float] = []  # the used cores' next free times; the rest are free
        self._samplers: dict[str, Callable[[], float]] = {
            op: dist.sampler(rng) for op, dist in self.cost.items()
        }
        self._zero = Const(0.0).sampler()
        self.busy_s = 0.0
        self.statements = 0

    def admit(self, op: str, arrival_s: float) -> float:
        """Queue one statement arriving at `arrival_s`; return when it finishes."""
        service = self._samplers.get(op, self._zero)()
        if len(self._free_at) < self.cores:
            finish = arrival_s + service
            heapq.heappush(self._free_at, finish)
        else:
            free = self._free_at[0]
            finish = (free if free > arrival_s else arrival_s) + service
            heapq.heapreplace(self._free_at, finish)
        self.busy_s += service
        self.statements += 1
        return finish

    def utilisation(self, elapsed_s: float) -> float:
        return self.busy_s / (self.cores * elapsed_s) if elapsed_s > 0 else 0.0

    def busy_until(self, now: float) -> float:
        """Core-seconds of work done by `now`: what was admitted, less what is still queued or
        running after `now` (a statement is admitted when it arrives, so each core is busy
        without a gap from `now` to its next free time)."""
        return self.busy_s - sum(free - now for free in self._free_at if free > now)


class SharedServer(DbServer):
    """Cores shared among the statements running on them, as an operating system's scheduler
    shares a CPU among runnable backends (processor sharing): n statements on c cores each
    progress at min(1, c/n) of a core. A short statement is not held behind a long one, and a
    long one is stretched by everything that arrives while it runs. On a saturated PostgreSQL
    core this is what Linux does (a claiming fetch took 191 ms while empty polls beside it took
    3-4 ms, `traces/recorded/dbload/`); first come, first served makes every statement wait
    the same.

    A statement's finish is not known when it arrives (later arrivals slow it, departures speed
    it up), so `submit` returns an event that triggers when its work is done. Every statement
    on the server has received the same service since it arrived (`_attained` grows at the
    common rate), so each is done when `_attained` reaches its value at the arrival plus its
    work; one timer, for the smallest such tag, drives the server."""

    shared = True

    def __init__(
        self,
        env,
        cores: int,
        cost: Mapping[str, Dist],
        rng: np.random.Generator | None = None,
    ):
        super().__init__(cores, cost, rng)
        self.env = env
        self._attained = 0.0
        """Service received by each statement on the server, since the run began."""
        self._since = 0.0  # when `_attained` was last brought up to date
        self._running: list[tuple[float, int, Event]] = []  # (done at `_attained`, order, event)
        self._order = count()
        self._timer: Event | None = None
        self._timer_at = float("inf")

    def submit(self, op: str) -> Event | None:
        """Start one statement now; return the event its work's end triggers (None for a
        statement that costs nothing)."""
        service = self._samplers.get(op, self._zero)()
        self.busy_s += service
        self.statements += 1
        if service <= 0.0:
            return None
        env = self.env
        self._advance(env._now)
        event = Event(env)
        heapq.heappush(self._running, (self._attained + service, next(self._order), event))
        self._arm()
        return event

    def busy_until(self, now: float) -> float:
        """Core-seconds of work done by `now`: what was submitted, less what the statements on
        the server still have to do. A read: the server's clock is left as it is, so reading
        it does not change how the sums round."""
        attained = self._attained_at(now)
        return self.busy_s - sum(tag - attained for tag, _, _ in self._running)

    def _attained_at(self, now: float) -> float:
        """The service each statement on the server has received by `now`."""
        n = len(self._running)
        if not n:
            return self._attained
        return self._attained + (now - self._since) * (1.0 if n <= self.cores else self.cores / n)

    def _advance(self, now: float) -> None:
        self._attained = self._attained_at(now)
        self._since = now

    def _arm(self) -> None:
        """Make sure a timer fires no later than the next statement's end. When the live
        timer fires sooner than that (an arrival slowed everyone down), it is kept: it fires,
        finds nothing done and sets the next one, which is cheaper than a timer per arrival."""
        running = self._running
        if not running:
            return
        n = len(running)
        left = running[0][0] - self._attained
        now = self.env._now
        at = now + (left * (1.0 if n <= self.cores else n / self.cores) if left > 0.0 else 0.0)
        if at < self._timer_at:
            self._timer_at = at
            self._timer = timer = self.env.timeout(at - now)
            timer.callbacks.append(self._wake)

    def _wake(self, timer: Event) -> None:
        if timer is not self._timer:
            return  # superseded by an earlier one
        self._timer = None
        self._timer_at = float("inf")
        self._advance(self.env._now)
        running = self._running
        done = self._attained + 1e-12 * (1.0 + self._attained)  # rounding of the sums
        finished = []
        while running and running[0][0] <= done:
            finished.append(heapq.heappop(running)[2])
        self._arm()
        # the statements' callers go on now, within this timer's processing: one event per
        # end instead of two (the server is up to date first, since they may submit more)
        for event in finished:
            event._ok = True
            event._value = None
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
