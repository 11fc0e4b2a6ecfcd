"""More runtime nodes for `durosim record --nodes N`: each a process of its own running the same
runtime (its own sqlx pool of DUROXIDE_PG_POOL_MAX connections, its own dispatcher slots) against
the same database and schema, as a second host of a deployment would, with no client load (the
lab's `fanout.py --runtime-only-s`). A node runs until its standard input closes, then shuts its
runtime down; a node that does not stop in time is killed.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys

from durosim.lab.driver import Plan, first_line
from durosim.sim.errors import ExternalError

READY = "ready"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class NodeProcess:
    """One runtime node in a child process (a context manager)."""

    def __init__(self, dsn: str, schema: str, plan: Plan, number: int):
        self.args = json.dumps(
            {"dsn": dsn, "schema": schema, "plan": dataclasses.asdict(plan), "number": number}
        )
        self.number = number
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> NodeProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C is for the parent, which stops it
        )
        line = self.process.stdout.readline().strip()
        if line != READY:
            error = self.process.stderr.read().strip().splitlines()
            self.stop()
            raise ExternalError(
                f"runtime node {self.number} did not start: {error[-1] if error else line}"
            )
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.stdin.close()
            process.wait(timeout=STOP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            stream.close()


def _serve(text: str) -> None:
    """The child of `NodeProcess`: start the runtime, say so, run until stdin closes."""
    from durosim.lab.real_runtime import build_runtime, connect, import_duroxide, started

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = json.loads(text)
    plan = Plan(**args["plan"])
    duroxide = import_duroxide()
    try:
        provider = connect(duroxide, args["dsn"], args["schema"])
        with started(build_runtime(duroxide, provider, plan), plan):
            print(READY, flush=True)
            sys.stdin.read()
    except ExternalError as err:
        print(first_line(err), file=sys.stderr, flush=True)
        sys.exit(1)


_CHILD = "import sys; from durosim.lab.nodes import _serve; _serve(sys.argv[1])"
