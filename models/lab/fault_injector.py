"""Applying `durosim record --fault`s to a real run, each on a thread of its own, timed from the
run's start (the Driver's t0, when the first orchestration starts):

- database: `Server.stop_fast` (pg_ctl stop -m fast: backends terminated, new connections
  refused), then `Server.start` on the same data folder and port after DURATION;
- link: `ProxyProcess.pause`, then `resume` (bytes held, connections open);
- node: SIGKILL to runtime node K; with DURATION, a fresh node K started (as `start_nodes` does)
  that much later.

Each fault's header entry gets what was measured on the trace's clock: `applied_s`, when the
fault was issued, and `ended_s`, when the resource was back (the server accepting connections
again, the proxy resumed, the new node ready), or None when it never was; `error` when applying
or undoing failed. A fault still on when the run ends is undone then (the database restarted, the
link resumed), so the runtime shuts down against a working server; a node not yet restarted stays
down. A fault whose start the run never reached has `applied_s` None.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from durosim.lab.driver import Driver, first_line
from durosim.lab.faults import Fault

Restart = Callable[[int], object]
"""Starts a fresh runtime node K and returns it (something with `stop`), or raises."""


class FaultInjector:
    """The run's faults, each applied on time on a thread of its own; `close` undoes what is
    still on and stops any node it started."""

    def __init__(
        self,
        faults: tuple[Fault, ...],
        server=None,
        proxy=None,
        nodes: dict | None = None,
        restart: Restart | None = None,
        watch=None,
    ):
        self.faults = faults
        self.server = server
        self.proxy = proxy
        self.nodes = nodes or {}
        self.restart = restart
        self.watch = watch
        self.results = [dict(f.condition(), applied_s=None, ended_s=None) for f in faults]
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []
        self.started_nodes: list = []
        self.lock = threading.Lock()

    def start(self, driver: Driver) -> None:
        for fault, result in zip(self.faults, self.results):
            thread = threading.Thread(
                target=self._run, args=(fault, result, driver), name="durosim-fault", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        """End the faults now (what is on is undone), then stop the nodes started again."""
        self.done.set()
        for thread in self.threads:
            thread.join()
        self.threads = []
        with self.lock:
            nodes, self.started_nodes = self.started_nodes, []
        for node in nodes:
            node.stop()

    def _run(self, fault: Fault, result: dict, driver: Driver) -> None:
        while not driver.started.wait(0.05):
            if self.done.is_set():
                return
        t0 = driver.t0

        def now_s() -> float:
            return round(time.perf_counter() - t0, 3)

        if self.done.wait(max(0.0, t0 + fault.start_s - time.perf_counter())):
            return
        begin, end = self._actions(fault)
        result["applied_s"] = now_s()
        try:
            begin()
        except Exception as err:  # reported in the header; the run goes on
            result["error"] = f"applying: {first_line(err)}"
            return
        if fault.duration_s is None:
            return
        cut_short = self.done.wait(max(0.0, t0 + fault.end_s - time.perf_counter()))
        if cut_short and fault.kind == "node":
            return  # the run is over: no node to start again
        try:
            end()
        except Exception as err:
            result["error"] = f"undoing: {first_line(err)}"
            return
        result["ended_s"] = now_s()

    def _actions(self, fault: Fault) -> tuple[Callable[[], None], Callable[[], None]]:
        """What applies the fault and what undoes it."""
        if fault.kind == "database":
            return self._stop_server, self._start_server
        if fault.kind == "link":
            return self.proxy.pause, self.proxy.resume
        return (lambda: self._kill(fault.node)), (lambda: self._restart(fault.node))

    def _stop_server(self) -> None:
        if self.watch is not None:
            self.watch.server_stopping()
        self.server.stop_fast()

    def _start_server(self) -> None:
        self.server.start()
        if self.watch is not None:
            self.watch.server_started()

    def _kill(self, number: int) -> None:
        node = self.nodes.get(number)
        if node is None or node.process is None:
            raise RuntimeError(f"node {number} is not running")
        node.kill()

    def _restart(self, number: int) -> None:
        node = self.restart(number)
        with self.lock:
            self.started_nodes.append(node)
        self.nodes[number] = node
