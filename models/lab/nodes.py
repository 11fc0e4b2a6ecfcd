"""More runtime nodes for `durosim record --nodes N`: each a process of its own running the same
runtime (its own sqlx pool of DUROXIDE_PG_POOL_MAX connections, its own dispatcher slots) against
the same database and schema, as a second host of a deployment would, with no client load (the
lab's `fanout.py --runtime-only-s`). A node runs until its standard input closes, then shuts its
runtime down; a node that does not stop in time is killed. Once ready, what a node writes (the
runtime logs its warnings to standard output: tracing-subscriber's fmt writer is stdout) is
passed on to our standard error, each line marked with the node, so a runtime's complaints (a
database gone, say) are seen and a full pipe can never stall the node. `record --fault
nodeK@...` kills one with SIGKILL (`kill`) and may start a fresh one in its place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
from contextlib import ExitStack

from durosim.lab.child import ChildProcess
from durosim.lab.driver import Plan, first_line
from durosim.sim.errors import ExternalError

READY = "ready"
STOP_TIMEOUT_S = 15.0


class NodeProcess(ChildProcess):
    """One runtime node in a child process (a context manager)."""

    stop_timeout_s = STOP_TIMEOUT_S

    def __init__(self, dsn: str, schema: str, plan: Plan, number: int, executions: str = ""):
        args = {
            "dsn": dsn,
            "schema": schema,
            "plan": dataclasses.asdict(dataclasses.replace(plan, faults=())),
            "number": number,
            "executions": executions,
        }
        super().__init__(f"runtime node {number}", _CHILD, [json.dumps(args)])
        self.number = number
        self._relays: list[threading.Thread] = []
        # record --calls sets RUST_LOG for its own node's log; with it a node would log to its
        # standard output, where its parent reads "ready"
        self.env = {key: value for key, value in os.environ.items() if key != "RUST_LOG"}

    def read_first_line_or_error(self) -> str:
        """Its first line, or its error's last line when it exited without one; once it said
        it is ready, its standard error is relayed to ours."""
        try:
            line = self.read_first_line()
        except OSError as err:
            return str(err)
        if line == READY:
            for stream in (self.process.stdout, self.process.stderr):
                relay = threading.Thread(target=_relay, args=(stream, self.number), daemon=True)
                relay.start()
                self._relays.append(relay)
        return line

    def kill(self) -> None:
        """SIGKILL, as a host that dies: no shutdown, its locks left to expire."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def exited(self) -> None:
        """The relays end at their streams' end: let them finish before the streams close."""
        relays, self._relays = self._relays, []
        for relay in relays:
            relay.join(timeout=5)

    def __enter__(self) -> NodeProcess:
        try:
            line = self.first_line()
        except OSError as err:
            raise ExternalError(str(err)) from None
        if line != READY:
            self.stop()
            raise ExternalError(f"{self.what} did not start: {line}")
        return self


# What a node says when the server had no connection left for it (max_connections reached:
# sqlx retried "too many clients" until its acquire timeout).
REFUSED = "pool timed out"


def _relay(stream, number: int) -> None:
    try:
        for line in stream:
            sys.stderr.write(f"node {number}: {line}")
    except (OSError, ValueError):  # closed under us
        pass


def start_nodes(
    stack: ExitStack, dsn: str, schema: str, plan: Plan, executions: str = ""
) -> tuple[dict[int, NodeProcess], list[str]]:
    """Start nodes 2..plan.nodes at once, as a deployment's hosts start, and wait until each is
    ready; stop them when `stack` closes. Returns the running nodes by number, and the error
    lines of those the server refused connections (their pool timed out), which are left out;
    any other failure raises. `executions`: the folder their activities are counted in."""
    nodes = [
        NodeProcess(dsn, schema, plan, number, executions) for number in range(2, plan.nodes + 1)
    ]
    for node in nodes:
        node.launch()
        stack.callback(node.stop)
    running, refused = {}, []
    for node in nodes:
        line = node.read_first_line_or_error()
        if line == READY:
            running[node.number] = node
            continue
        if REFUSED in line:
            refused.append(line)
            node.stop()
            continue
        raise ExternalError(
            line if line.startswith(node.what) else f"{node.what} did not start: {line}"
        )
    return running, refused


def _serve(text: str) -> None:
    """The child of `NodeProcess`: start the runtime, say so, run until stdin closes."""
    from durosim.lab.executions import counter
    from durosim.lab.real_runtime import build_runtime, connect, import_duroxide, started

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = json.loads(text)
    plan = Plan(**args["plan"])
    count = counter(args["executions"], f"node{args['number']}") if args["executions"] else None
    duroxide = import_duroxide()
    try:
        provider = connect(duroxide, args["dsn"], args["schema"])
        with started(build_runtime(duroxide, provider, plan, count), plan):
            print(READY, flush=True)
            sys.stdin.read()
    except ExternalError as err:
        print(first_line(err), file=sys.stderr, flush=True)
        sys.exit(1)


_CHILD = "import sys; from durosim.lab.nodes import _serve; _serve(sys.argv[1])"
