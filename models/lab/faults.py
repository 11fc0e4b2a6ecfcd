"""The faults `durosim record --fault SPEC` injects into a real run, as written on the command line
and as the trace's header carries them (`conditions.faults`), so the simulator can replay them.

    database@10+8    stop the throwaway PostgreSQL at 10 s (`pg_ctl stop -m fast`), start it 8 s
                     later on the same data folder and port
    link@12+3        hold every byte in the delay proxy for 3 s from 12 s; connections stay open
    node2@10         kill -9 runtime node 2 at 10 s (node 1 runs the client)
    node2@10+20      ... and start a fresh node 2 twenty seconds later

Times are seconds from the run's start, the instant the orchestration records' `start_ms` count
from. Applying them is `durosim.lab.fault_injector`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from durosim.sim.errors import InputError

GRAMMAR = (
    "database@START+DURATION, link@START+DURATION, nodeK@START or nodeK@START+DURATION "
    "(seconds from the run's start, e.g. database@10+8)"
)
_SPEC = re.compile(r"(database|link|node(\d+))@(\d+(?:\.\d+)?)(?:\+(\d+(?:\.\d+)?))?")


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: what (`kind`, and which `node`), when (`start_s`) and for how long
    (`duration_s`; None: a node crash that is never undone)."""

    kind: str
    start_s: float
    duration_s: float | None
    node: int | None = None
    spec: str = ""

    @property
    def resource(self) -> str:
        return f"node{self.node}" if self.kind == "node" else self.kind

    @property
    def end_s(self) -> float:
        return math.inf if self.duration_s is None else self.start_s + self.duration_s

    def condition(self) -> dict:
        """The header's form: {"kind", ("node",) "start_s", "duration_s"}."""
        out: dict = {"kind": self.kind}
        if self.node is not None:
            out["node"] = self.node
        return {**out, "start_s": self.start_s, "duration_s": self.duration_s}


def parse_fault(spec: str) -> Fault:
    """One `--fault` SPEC, or an InputError naming it and the grammar."""
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise InputError(f"--fault {spec!r}: expected {GRAMMAR}")
    name, number, start, duration = match.groups()
    kind = "node" if number is not None else name
    if duration is None and kind != "node":
        raise InputError(
            f"--fault {spec!r}: the {kind} comes back, say when: {kind}@START+DURATION"
        )
    duration_s = None if duration is None else float(duration)
    if duration_s is not None and duration_s <= 0:
        raise InputError(f"--fault {spec!r}: DURATION must be > 0 seconds")
    node = None if number is None else int(number)
    return Fault(kind, float(start), duration_s, node, spec.strip())


def check_faults(
    faults: tuple[Fault, ...], nodes: int, rtt_ms: float, dsn: str | None, run_s: float | None
) -> None:
    """Refuse faults this run cannot apply: a database fault without the throwaway cluster, a
    link fault without the proxy, a node that is the client's or not there, a start after the
    run's arrivals end (`run_s`; None: unknown), two faults of one resource at once."""
    for fault in faults:
        where = f"--fault {fault.spec!r}"
        if fault.kind == "database" and dsn is not None:
            raise InputError(f"{where}: only the throwaway cluster can be stopped, not --dsn")
        if fault.kind == "link" and rtt_ms <= 0:
            raise InputError(f"{where}: the link is the delay proxy; it needs --rtt-ms > 0")
        if fault.kind == "node" and not 2 <= fault.node <= nodes:
            raise InputError(
                f"{where}: expected node2..node{nodes} (--nodes {nodes}); node 1 runs the "
                "client and cannot be crashed"
                if nodes > 1
                else f"{where}: node 1 runs the client and cannot be crashed; add --nodes N"
            )
        if run_s is not None and fault.start_s > run_s:
            raise InputError(f"{where}: START is after the run's {run_s:g} s (--duration-s)")
    ordered = sorted(faults, key=lambda f: (f.resource, f.start_s))
    for before, after in zip(ordered, ordered[1:]):
        if before.resource == after.resource and after.start_s < before.end_s:
            raise InputError(
                f"--fault {after.spec!r} overlaps --fault {before.spec!r}: one fault of the "
                f"{before.resource} at a time"
            )
