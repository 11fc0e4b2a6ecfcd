"""The workloads that drive the runtime through its client, as the real drivers do.

- `sequential`: one orchestration at a time (start, wait, next), the lab's `seq` mode;
- `closed`: `in_flight` client loops, each starting the next orchestration when its last one
  completes, the lab's `conc` mode;
- `stress`: duroxide's stress test (dx-cur `src/provider_stress_test/core.rs`; the lab's
  `fanout.py --mode stress`): for `duration_s` a pump launches an orchestration whenever fewer
  than `in_flight` are active (1 ms pause after a launch, 10 ms when full), then the drain checks
  every 100 ms (at most 1200 times) until none is active; throughput = completed / total time;
- `open`: orchestrations arrive at given times (Poisson, or a trace's start times replayed),
  whatever is in flight; those arriving before `warmup_s` are left out of the statistics.
In sequential and closed modes the first `warmup` orchestrations are left out of the statistics;
the measured window runs from the first measured start to the last measured end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import simpy

from durosim.model.client import Client
from durosim.model.program import Program
from durosim.model.provider import ProviderUnavailable
from durosim.model.queues import CallLog, Instance
from durosim.model.scenario import Workload
from durosim.model.workflows import Mix

LAUNCH_PAUSE_S = 0.001
FULL_PAUSE_S = 0.010
DRAIN_CHECK_S = 0.100
DRAIN_CHECKS = 1200


class Driver:
    def __init__(
        self,
        env: simpy.Environment,
        clients: list[Client],
        log: CallLog,
        spec: Workload,
        on_done: Callable[[Instance, float, list[float] | None], None],
        on_measure_start: Callable[[], None],
        arrivals_s: Sequence[float] | None,
        programs: list[Program],
        mix: np.random.Generator,
        sequence: list[Program] | None = None,
    ):
        """`clients`: one per runtime node; orchestration n goes through clients[n % nodes].
        `programs`: the workflows clients start, drawn by weight from `mix` when there are
        several."""
        self.env = env
        self.clients = clients
        self.programs = programs
        self.mix = mix
        self.sequence = sequence
        self.weights = Mix(p.weight or 1.0 for p in programs)
        self.arrivals_s = arrivals_s
        self.log = log
        self.spec = spec
        self.on_done = on_done
        self.on_measure_start = on_measure_start
        self.launched = 0
        self.active = 0
        self.measured_done = 0
        self.window_start_s: float | None = None
        self.window_end_s: float | None = None
        self.on_window_end: Callable[[], None] | None = None
        """Told whenever the measured window's end moves to now."""
        self.total_s: float | None = None
        self.completed = 0
        self.failed = 0
        self.open_began: float | None = None
        self.completed_in_window = 0
        self.arrived_in_window = 0

    def run(self):
        """Generator: the whole workload; returns when it is over."""
        if self.spec.mode == "stress":
            yield from self.stress()
        elif self.spec.mode == "open":
            yield from self.open()
        else:
            loops = 1 if self.spec.mode == "sequential" else self.spec.in_flight
            yield self.env.all_of([self.env.process(self.client_loop()) for _ in range(loops)])

    def _program(self, number: int) -> Program:
        if self.sequence:
            return self.sequence[number % len(self.sequence)]
        return self.programs[self.weights.pick(self.mix)]

    def orchestration(self, number: int, measured: bool):
        env = self.env
        program = self._program(number)
        instance = Instance(f"i-{number}", number, env.now, measured, program)
        client = self.clients[number % len(self.clients)]
        try:
            yield from client.start(instance)
            for node in program.events:
                env.process(client.raise_event(instance, node))
            path = yield from client.wait(instance, self.spec.wait_timeout_s)
        except ProviderUnavailable:
            path = None  # the client's call failed: its pool timed out
        if instance.failed:
            path = None  # the client sees the orchestration failed
        self.active -= 1
        if measured and self.spec.mode == "open" and path is not None:
            # the window ends with the last measured completion, as a trace's measured span does
            self._end_window()
        if path is not None and self.open_began is not None:
            if self.spec.warmup_s <= env.now - self.open_began <= self.spec.duration_s:
                self.completed_in_window += 1
        if path is None:
            self.failed += 1
        else:
            self.completed += 1
        self.on_done(instance, env.now, path)

    def client_loop(self):
        spec = self.spec
        total = spec.warmup + spec.count
        while self.launched < total:
            number = self.launched
            self.launched += 1
            measured = number >= spec.warmup
            if measured and self.window_start_s is None:
                self.window_start_s = self.env.now
                self.log.measuring = True
                self.on_measure_start()
            self.active += 1
            yield from self.orchestration(number, measured)
            if measured:
                self.measured_done += 1
                if self.measured_done == spec.count:
                    self._end_window()
                    self.log.measuring = False

    def _end_window(self) -> None:
        self.window_end_s = self.env.now
        if self.on_window_end is not None:
            self.on_window_end()

    def stress(self):
        env = self.env
        began = env.now
        self.window_start_s = began
        self.log.measuring = True
        self.on_measure_start()
        pump_end = began + self.spec.duration_s
        while env.now < pump_end:
            if self.active >= self.spec.in_flight:
                yield env.timeout(FULL_PAUSE_S)
                continue
            number = self.launched
            self.launched += 1
            self.active += 1  # counted now: the process starts after this step
            env.process(self.orchestration(number, True))
            yield env.timeout(LAUNCH_PAUSE_S)
        checks = 0
        while self.active > 0 and checks < DRAIN_CHECKS:
            yield env.timeout(DRAIN_CHECK_S)
            checks += 1
        self.total_s = env.now - began
        self._end_window()
        self.log.measuring = False

    def open(self):
        env = self.env
        began = self.open_began = env.now
        for at in self.arrivals_s or ():
            if began + at > env.now:
                yield env.timeout(began + at - env.now)
            number = self.launched
            self.launched += 1
            measured = at >= self.spec.warmup_s
            if measured and at <= self.spec.duration_s:
                self.arrived_in_window += 1
            if measured and self.window_start_s is None:
                self.window_start_s = env.now
                self.log.measuring = True
                self.on_measure_start()
            self.active += 1  # counted now: the process starts after this step
            env.process(self.orchestration(number, measured))
        while self.active > 0:
            yield env.timeout(DRAIN_CHECK_S)
        self.log.measuring = False
