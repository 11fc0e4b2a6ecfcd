"""A dispatcher loop: fetch an item, handle it, and when there was nothing, wait as its wake-up
strategy says.

Strategies:
- `MinPollInterval(interval_s)`: sleep what is left of the interval, counted from the start of the
  empty fetch, or nothing if the fetch took longer (duroxide since core cb99eee, 2025-12-10:
  `dispatcher_min_poll_interval`, dx-cur `orchestration.rs:390-516`, `worker.rs:202-250`);
- `SleepAfterEmpty(pause_s)`: sleep a fixed time after every empty fetch (duroxide at the seed
  commit 8e0952e9: `dispatcher_idle_sleep_ms`, `runtime/mod.rs:405-447`).
A non-empty fetch is handled at once and the loop fetches again without sleeping. All loops start
together at time zero, with no jitter, as duroxide spawns them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import simpy

from durosim.sim.db import NodeDown

# A dispatcher's back-off after a retryable provider error: min(100 ms x 2^n, 3 s), n the errors
# in a row (so 200 ms first); 100 ms after a permanent one (dx-cur `orchestration.rs:390-516`,
# `worker.rs:202-250`).
ERROR_BACKOFF_S = 0.1
ERROR_BACKOFF_MAX_S = 3.0


class _Never(Exception):
    """No error is retryable: nothing raises this."""


class Signal:
    """A broadcast: every process waiting on it wakes when it fires."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.generation = 0
        self.event = env.event()

    def fire(self) -> None:
        self.generation += 1
        event, self.event = self.event, self.env.event()
        event.succeed()


@dataclass(frozen=True, slots=True)
class MinPollInterval:
    interval_s: float

    def before_fetch(self) -> int:
        return 0

    def after_empty(self, env: simpy.Environment, started_s: float, token: int):
        pause = self.interval_s - (env._now - started_s)
        return env.timeout(pause) if pause > 0 else None


@dataclass(frozen=True, slots=True)
class SleepAfterEmpty:
    pause_s: float

    def before_fetch(self) -> int:
        return 0

    def after_empty(self, env: simpy.Environment, started_s: float, token: int):
        return env.timeout(self.pause_s) if self.pause_s > 0 else None


@dataclass(frozen=True, slots=True)
class Notify:
    signal: Signal
    timeout_s: float

    def before_fetch(self) -> int:
        return self.signal.generation

    def after_empty(self, env: simpy.Environment, started_s: float, token: int):
        if self.signal.generation != token:
            return None
        return env.any_of([self.signal.event, env.timeout(self.timeout_s)])


class Dispatcher:
    """One dispatcher slot: handles one item at a time."""

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        fetch: Callable[[Dispatcher], Generator],
        handle: Callable[[object, Dispatcher], Generator],
        wakeup: MinPollInterval | SleepAfterEmpty | Notify,
        failing: type[BaseException] = _Never,
    ):
        self.env = env
        self.name = name
        self.fetch = fetch
        self.handle = handle
        self.wakeup = wakeup
        self.free_since = 0.0
        self.busy_s = 0.0
        self.failing = failing
        """The exception of a retryable provider error, which the loop backs off from."""
        self.errors = 0
        self.process = env.process(self.run())

    def run(self):
        env = self.env
        wakeup = self.wakeup
        failing = self.failing
        errors = 0
        while True:
            started = env._now
            token = wakeup.before_fetch()
            try:
                item = yield from self.fetch(self)
                if item is not None:
                    yield from self.handle(item, self)
            except NodeDown:
                return  # the node crashed: its slots stop
            except failing as err:
                self.errors += 1
                if getattr(err, "retryable", True):
                    # sleep min(100 ms x 2^n, 3 s), n retryable errors in a row
                    errors += 1
                    yield env.timeout(min(ERROR_BACKOFF_S * 2**errors, ERROR_BACKOFF_MAX_S))
                else:  # a permanent error: 100 ms
                    errors = 0
                    yield env.timeout(ERROR_BACKOFF_S)
                continue
            errors = 0
            if item is None:
                wait = wakeup.after_empty(env, started, token)
                if wait is not None:
                    yield wait
                continue
            self.busy_s += env._now - started
            self.free_since = env._now
