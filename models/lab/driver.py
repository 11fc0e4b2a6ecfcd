"""The workload `durosim record` drives through the real duroxide runtime: the plan of a run,
the client threads of each mode (sequential, closed, the stress test's pump and drain, open-loop
Poisson arrivals), the trace written record by record, and the progress bar. The runtime and the
database around it are set up in `durosim.lab.recorder`."""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click

from durosim.evidence.conditions import conditions
from durosim.evidence.trace_format import FORMAT
from durosim.model.workload import DRAIN_CHECK_S, DRAIN_CHECKS, FULL_PAUSE_S, LAUNCH_PAUSE_S
from durosim.sim.config import to_table

RUNTIME = "duroxide-0.2"


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass(frozen=True, slots=True)
class Plan:
    """What one recording runs: the lab's fan-out workload and the runtime's settings."""

    rtt_nominal_ms: float
    fanout: int
    activity_ms: float
    orchestration_concurrency: int
    worker_concurrency: int
    mode: str
    in_flight: int
    count: int
    duration_s: float
    warmup: int
    poll_interval_ms: int
    pool_size: int
    arrival_rate_per_s: float | None = None
    """open: Poisson arrivals per second."""
    seed: int = 1
    """open: the seed of the arrival times."""
    wait_timeout_ms: int = 120_000
    """How long the client waits for one orchestration (`wait_for_orchestration`)."""
    nodes: int = 1
    """Runtimes against the database, each a process with its own pool and slots; the client
    load runs on the first."""
    workload: str = ""
    """A scenario file whose workflows the run starts instead of the fan-out (`--workload`)."""
    database_cores: int | None = None
    """The throwaway cluster pinned to this many CPUs (`--db-cores`); None: not pinned."""
    faults: tuple = ()
    """`durosim.lab.faults.Fault`s injected into the run (`--fault`)."""

    def workflows(self) -> tuple:
        """The scenario's workflows (none without `--workload`)."""
        if not self.workload:
            return ()
        from durosim.model.scenario import load

        return load(self.workload).workload.workflows

    def arrivals_s(self) -> list[float]:
        """open: the arrival times, seconds from the first arrival window's start."""
        draw = random.Random(self.seed)
        times, at = [], 0.0
        while True:
            at += draw.expovariate(self.arrival_rate_per_s)
            if at > self.duration_s:
                return times
            times.append(at)

    def conditions(self, rtt_ms: float, database: str) -> dict:
        return conditions(
            runtime=RUNTIME,
            database=database,
            rtt_ms=rtt_ms,
            rtt_nominal_ms=self.rtt_nominal_ms,
            fanout=self.fanout,
            activity_ms=self.activity_ms,
            orchestration_concurrency=self.orchestration_concurrency,
            worker_concurrency=self.worker_concurrency,
            poll_interval_ms=self.poll_interval_ms,
            pool_size=self.pool_size,
            mode=self.mode,
            in_flight=1 if self.mode in ("sequential", "open") else self.in_flight,
            duration_s=self.duration_s if self.mode in ("stress", "open") else None,
            arrival_rate_per_s=self.arrival_rate_per_s if self.mode == "open" else None,
            wait_timeout_ms=self.wait_timeout_ms,
            nodes=self.nodes,
            client_nodes=1,
            database_cores=self.database_cores,
            workflows=[to_table(w) for w in self.workflows()] or None,
            faults=[f.condition() for f in self.faults] or None,
        )


class TraceWriter:
    """A `durosim-trace/1` file written as it is measured: the lines
    `durosim.evidence.trace_format.write_trace` writes, each flushed at once. Safe to call from
    several threads."""

    def __init__(self, path: Path, source: str, conditions: dict):
        self.path = path
        self.lock = threading.Lock()
        self.written = 0
        self.handle = open(path, "w", encoding="utf-8")
        self._line({"format": FORMAT, "source": source, "conditions": conditions})

    def _line(self, obj: dict) -> None:
        self.handle.write(json.dumps(obj) + "\n")
        self.handle.flush()

    def write(self, record: dict) -> None:
        with self.lock:
            if not self.handle.closed:
                self._line(record)
                self.written += 1

    def close(self, header: dict | None = None) -> None:
        """Close the file; `header` adds keys beside `conditions` (the counts known only at the
        end), rewriting the file through a temporary one beside it."""
        with self.lock:
            if self.handle.closed:
                return
            self.handle.close()
            if not header:
                return
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            first = json.loads(lines[0])
            first.update(header)
            lines[0] = json.dumps(first) + "\n"
            scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            scratch.write_text("".join(lines), encoding="utf-8")
            os.replace(scratch, self.path)


class Progress:
    """A progress bar on stderr that several threads may advance."""

    def __init__(self, length: int, label: str):
        self.bar = click.progressbar(length=length, label=label, file=sys.stderr)
        self.lock = threading.Lock()
        self.position = 0

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def to(self, position: int) -> None:
        with self.lock:
            if position > self.position:
                self.bar.update(position - self.position)
                self.position = position

    def advance(self) -> None:
        self.to(self.position + 1)


class Failed(Exception):
    """An orchestration that did not complete, or a client call that failed."""


class Driver:
    """Starts orchestrations through the client and writes one record per finished one;
    times in ms from the first orchestration's start (time.perf_counter)."""

    def __init__(self, client, plan: Plan, writer: TraceWriter, progress: Progress):
        self.client = client
        self.plan = plan
        self.writer = writer
        self.progress = progress
        self.run_id = uuid.uuid4().hex[:8]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.t0: float | None = None
        self.t0_wall: float | None = None
        self.started = threading.Event()
        """Set once t0 is: the faults are timed from it."""
        self.summary: dict | None = None
        self.header: dict = {}
        self.planner = None
        self.workflow_of: dict[str, str] = {}
        if plan.workload:
            from durosim.lab.workflows import Planner
            from durosim.model.scenario import load

            self.planner = Planner(load(plan.workload), plan.seed)

    def one(self, name: str) -> tuple[str, float, float, str]:
        iid = f"rec-{self.run_id}-{name}"
        start, wall = time.perf_counter(), time.time()
        with self.lock:
            if self.t0 is None:
                self.t0, self.t0_wall = start, wall
                self.started.set()
        try:
            if self.planner is None:
                self.client.start_orchestration(iid, "FanOut", {"n": self.plan.fanout})
            else:
                self._start_workflow(iid, start)
            result = self.client.wait_for_orchestration(iid, self.plan.wait_timeout_ms)
            status = result.status
            if status != "Completed":
                status = f"{status}: {result.error}"
        except Exception as err:  # a client call that failed (server or proxy gone)
            status = f"client error: {first_line(err)}"
        return iid, start, time.perf_counter(), status

    def _start_workflow(self, iid: str, start: float) -> None:
        """Start a workflow drawn from the mix, and raise its events when they are due."""
        from durosim.lab.workflows import orchestration_name

        with self.lock:
            workflow = self.planner.choose()
            data = self.planner.input(workflow)
            self.workflow_of[iid] = workflow.name
        self.client.start_orchestration(iid, orchestration_name(workflow.name), data)
        for name, after_s in self.planner.events(data):
            delay = max(0.0, start + after_s - time.perf_counter())
            timer = threading.Timer(delay, self._raise, args=(iid, name))
            timer.daemon = True
            timer.start()

    def _raise(self, iid: str, name: str) -> None:
        if self.stop.is_set():
            return
        try:
            self.client.raise_event(iid, name, None)
        except Exception:  # the orchestration's own record says whether it completed
            pass

    def record(self, iid: str, start: float, end: float, warmup: bool, **extra) -> None:
        self.writer.write(
            {
                "type": "orchestration",
                "instance": iid,
                "start_ms": round((start - self.t0) * 1000.0, 3),
                "end_ms": round((end - self.t0) * 1000.0, 3),
                "warmup": warmup,
                **({"workflow": self.workflow_of[iid]} if iid in self.workflow_of else {}),
                **extra,
            }
        )

    def run_one(self, name: str, warmup: bool) -> None:
        iid, start, end, status = self.one(name)
        if status != "Completed":
            if self.plan.faults or (self.planner is not None and status.startswith("Failed")):
                # a workflow whose activities may fail, or a run with faults injected: an
                # orchestration that fails or times out is an outcome, not the run's end
                self.record(iid, start, end, warmup, status=status)
                self.progress.advance()
                return
            self.stop.set()
            raise Failed(f"orchestration {iid} did not complete ({status})")
        self.record(iid, start, end, warmup)
        self.progress.advance()

    def run(self) -> None:
        for i in range(self.plan.warmup):
            if self.stop.is_set():
                return
            self.run_one(f"w{i}", True)
        if self.plan.mode == "stress":
            self.stress()
        elif self.plan.mode == "open":
            self.open()
        elif self.plan.mode == "closed":
            self.closed()
        else:
            for i in range(self.plan.count):
                if self.stop.is_set():
                    return
                self.run_one(f"m{i}", False)

    def closed(self) -> None:
        numbers = iter(range(self.plan.count))
        errors: list[Failed] = []

        def client_loop() -> None:
            while not self.stop.is_set():
                with self.lock:
                    number = next(numbers, None)
                if number is None:
                    return
                try:
                    self.run_one(f"m{number}", False)
                except Failed as err:
                    errors.append(err)
                    return

        loops = [
            threading.Thread(target=client_loop, daemon=True) for _ in range(self.plan.in_flight)
        ]
        for loop in loops:
            loop.start()
        for loop in loops:
            loop.join()
        if errors:
            raise errors[0]

    def stress(self) -> None:
        """duroxide's stress test: the pump, then the drain; failures are counted, not raised."""
        plan = self.plan
        state = {"active": 0, "completed": 0, "failed": 0}
        pump_over = threading.Event()

        def orchestration(number: int) -> None:
            iid, start, end, status = self.one(f"s{number}")
            if not self.stop.is_set():
                phase = "drain" if pump_over.is_set() else "pump"
                self.record(iid, start, end, False, status=status, phase=phase)
            with self.lock:
                state["completed" if status == "Completed" else "failed"] += 1
                state["active"] -= 1

        began = time.perf_counter()
        pump_end = began + plan.duration_s
        launched = 0
        while (now := time.perf_counter()) < pump_end and not self.stop.is_set():
            self.progress.to(plan.warmup + int(100 * (now - began) / plan.duration_s))
            with self.lock:
                full = state["active"] >= plan.in_flight
                if not full:
                    state["active"] += 1
            if full:
                time.sleep(FULL_PAUSE_S)
                continue
            threading.Thread(target=orchestration, args=(launched,), daemon=True).start()
            launched += 1
            time.sleep(LAUNCH_PAUSE_S)
        pump_over.set()
        self.progress.to(plan.warmup + 100)
        checks = 0
        while state["active"] > 0 and checks < DRAIN_CHECKS and not self.stop.is_set():
            time.sleep(DRAIN_CHECK_S)
            checks += 1
        if self.stop.is_set():
            return
        total_s = time.perf_counter() - began
        with self.lock:
            completed = state["completed"]
        self.summary = {
            "type": "summary",
            "completed": completed,
            "throughput_per_s": round(completed / total_s, 4),
            "total_s": round(total_s, 3),
        }
        if state["active"] > 0:
            self.summary["drain_timed_out"] = True
        self.writer.write(self.summary)

    def open(self) -> None:
        """Open loop: each orchestration starts at its Poisson arrival time on a thread of its
        own, whatever is in flight; one that fails or times out is recorded with its status."""
        plan = self.plan
        arrivals = plan.arrivals_s()
        state = {"started": 0, "failed": 0, "active": 0}

        def orchestration(number: int) -> None:
            iid, start, end, status = self.one(f"o{number}")
            if not self.stop.is_set():
                extra = {} if status == "Completed" else {"status": status}
                self.record(iid, start, end, False, **extra)
            with self.lock:
                state["failed"] += status != "Completed"
                state["active"] -= 1

        began = time.perf_counter()
        for number, at in enumerate(arrivals):
            if self.stop.wait(max(0.0, began + at - time.perf_counter())):
                return
            self.progress.to(plan.warmup + int(100 * at / plan.duration_s))
            with self.lock:
                state["started"] += 1
                state["active"] += 1
            threading.Thread(target=orchestration, args=(number,), daemon=True).start()
        self.progress.to(plan.warmup + 100)
        while state["active"] > 0:
            if self.stop.wait(DRAIN_CHECK_S):
                return
        self.header = {"arrivals": state["started"], "failed": state["failed"]}
