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
"""

from __future__ import annotations

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

    def step(self) -> None:
        """Process the next event, as SimPy's `step` does."""
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
                    self._now, _, _, event = heappop(queue)
                except IndexError:
                    raise EmptySchedule from None
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
