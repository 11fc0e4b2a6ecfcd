"""SimPy's event loop with fewer Python calls per event: the same events, in the same order.

    env = Environment()
    env.process(customer(env))
    env.run(until=10.0)
    env.events  # events processed so far

A long run spends much of its time in SimPy's kernel (the production scenario processes about
1.5 million events, nearly all Timeouts). `simpy.Environment.run` calls `step()` once per event,
and every Timeout calls `schedule()` to push itself onto the event heap. Here `run` processes the
events in one loop of its own, and a Timeout pushes itself. The heap's entries are SimPy's own
`(time, priority, eid, event)`, so the events run in exactly SimPy's order and a simulation gives
the same results, bit for bit. Processes, events, conditions, `step()` and `schedule()` are
SimPy's own. The loop also counts the events it processes (`events`, for `durosim bench`), at one
addition per event.

Work can also be deferred without an event, yet stay in SimPy's order: `reserve(delay)` gives the
place `(time, priority, eid)` a Timeout made now would take (using up its eid, so every later
event keeps its eid), and `has_passed(place)` says whether an event at that place would have been
processed by now. Whoever defers work applies it when its state is next used, if its place has
passed; it turns the work into an event at that place (`event_at`) when something must wait for
it; and it registers with `defer`, so that a run that has no events left schedules the deferred
work and ends where SimPy's would. `durosim.sim.pool` defers its release pings this way.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush

import simpy
from simpy.core import BoundClass, EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, Event, EventPriority


class Timeout(simpy.Timeout):
    """SimPy's Timeout, pushed onto the heap here instead of through `Environment.schedule`."""

    def __init__(self, env: Environment, delay: float, value: object = None):
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        self.env = env
        self.callbacks = []
        self._value = value
        self._delay = delay
        self._ok = True
        heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), self))


class Environment(simpy.Environment):
    """`simpy.Environment` whose `run` processes events without a `step()` call each."""

    timeout = BoundClass(Timeout)

    def __init__(self, initial_time: float = 0):
        super().__init__(initial_time)
        # SimPy binds its event factories (process, event, ...) to the instance for speed, but
        # only those defined on the instance's own class: bind the inherited ones as well. (Not
        # `vars(self)`: reading an instance's __dict__ turns it into a real dict in CPython 3.11,
        # which makes every attribute read slower, env._now and env._queue in every Timeout.)
        for klass in type(self).__mro__:
            for name, attribute in vars(klass).items():
                if type(attribute) is BoundClass:
                    setattr(self, name, getattr(self, name))
        self.events = 0
        """Events processed so far."""
        self._normal: tuple = (initial_time, NORMAL, -1)
        """The place of the last normal-priority event processed (before the first, a place
        before any event's)."""
        self._deferring: list[Callable[[], None]] = []

    def has_passed(self, place: tuple) -> bool:
        """Whether an event at `place` (a normal-priority one, from `reserve`) would have been
        processed by now: it is earlier, or earlier than a normal event processed at this time.
        (Normal events are processed in the order of their places, but an urgent event at
        this time, processed now, may have been made after later ones had been processed.)"""
        return place[0] < self._now or place < self._normal

    def reserve(self, delay: float) -> tuple[float, int, int]:
        """The place in the event order of a Timeout of `delay` made now; its eid is used up."""
        return (self._now + delay, NORMAL, next(self._eid))

    def event_at(self, place: tuple[float, int, int]) -> Event:
        """A triggered event, processed at `place` (from `reserve`)."""
        event = Event(self)
        event._ok = True
        event._value = None
        heappush(self._queue, (*place, event))
        return event

    def defer(self, schedule: Callable[[], None]) -> None:
        """Register `schedule`, which makes work deferred without events into events
        (`event_at`): it is called whenever no events are left."""
        self._deferring.append(schedule)

    def _schedule_deferred(self) -> bool:
        """Schedule the deferred work when no events are left; whether there are some now."""
        for schedule in self._deferring:
            schedule()
        return bool(self._queue)

    def peek(self) -> float:
        """The time of the next event (deferred work included), as SimPy's `peek`."""
        if not self._queue:
            self._schedule_deferred()
        return super().peek()

    def step(self) -> None:
        """Process the next event, as SimPy's `step` does."""
        if (self._queue or self._schedule_deferred()) and self._queue[0][1] == NORMAL:
            self._normal = self._queue[0]  # the one SimPy's `step` pops
        self.events += 1
        super().step()

    def run(self, until: float | Event | None = None) -> object:
        """As `simpy.Environment.run`: process events until the event `until` has been
        processed, or until the time `until`, or while there are any; return `until`'s value."""
        if until is not None:
            if not isinstance(until, Event):
                at = until if isinstance(until, int) else float(until)
                if at <= self._now:
                    raise ValueError(
                        f"until ({at}) must be greater than the current simulation time"
                    )
                # processed before any other event at that time, as in SimPy
                until = Event(self)
                until._ok = True
                until._value = None
                self.schedule(until, URGENT, at - self._now)
            elif until.callbacks is None:
                return until.value
            until.callbacks.append(StopSimulation.callback)
        try:
            self._process_events()
        except StopSimulation as stop:
            return stop.args[0]
        except EmptySchedule:
            if until is not None:
                assert not until.triggered
                raise RuntimeError(
                    f'No scheduled events left but "until" event was not triggered: {until}'
                ) from None
        return None

    def _process_events(self) -> None:
        """SimPy's `step()` inlined in a loop, until it raises EmptySchedule or
        StopSimulation."""
        queue = self._queue
        processed = 0
        try:
            while True:
                try:
                    self._now, priority, _, event = place = heappop(queue)
                except IndexError:
                    if self._schedule_deferred():
                        continue
                    raise EmptySchedule from None
                if priority == NORMAL:
                    self._normal = place
                processed += 1
                # callbacks set to None first: nothing may add one while they run
                callbacks, event.callbacks = event.callbacks, None
                try:
                    for callback in callbacks:
                        callback(event)
                except StopSimulation:
                    # the rest of the callbacks run first when the simulation resumes
                    event.callbacks = callbacks[callbacks.index(callback) + 1 :]
                    self.schedule(event, EventPriority(-1))
                    raise
                if not event._ok and not hasattr(event, "_defused"):
                    # a failed event nobody handled ends the run, as in SimPy
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
        finally:
            self.events += processed
