"""A database server: a number of cores serving statements first come, first served.

Each operation has its own service-time distribution (the statement's CPU and I/O on the server,
without the network). Statements queue for a free core in arrival order. Because the service
time is drawn on arrival, the start and finish of a FIFO multi-core queue are known at once: a
heap of the cores' next free times gives them without any simulation events of its own. Lock
waits are not served here: they belong to the caller (the statement's model), since a backend
waiting on a lock holds no core.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

import numpy as np

from durosim.sim.dist import Const, Dist


class DbServer:
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
