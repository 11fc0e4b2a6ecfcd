"""Activity executions counted across the processes of a recording, for the header's

    "activity_executions": {"total": 512, "distinct": 505}

duroxide runs an activity at least once, not exactly once: a worker that dies or loses its lock
leaves the work item to be fetched again once its lock expires (duroxide-pg's `fetch_work_item`
takes a row whose `locked_until` has passed; `RuntimeOptions.worker_lock_timeout`, 30 s by
default), so `total - distinct` is how many executions were repeats.

Each process (the client's runtime, every node, a node started again after a crash) appends one
line per invocation, `[instance, execution, key]`, to a file of its own in one folder, with a
single `write` on an O_APPEND descriptor as the activity begins: a line is in the file even if its
process is killed a moment later. `key` tells the activities of one execution apart (the fan-out's
index; a workflow's own numbering). Warm-up orchestrations count too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

Counter = Callable[[str, int, object], None]


class counter:  # noqa: N801 - used as the function that makes a process's counter
    """The callable this process's activities call as they begin: `count(instance, execution,
    key)`. It never raises: counting must not fail an activity. `close` lets the file go."""

    def __init__(self, folder: str | os.PathLike, process: str):
        path = Path(folder) / f"{process}-{os.getpid()}.log"
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, instance: str, execution: int, key: object) -> None:
        try:
            os.write(self.fd, (json.dumps([instance, execution, key]) + "\n").encode())
        except OSError:
            pass

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def totals(folder: str | os.PathLike) -> dict:
    """{"total": executions, "distinct": (instance, execution, key) triples} over every
    process's file; a line cut short by a kill is left out."""
    total, seen = 0, set()
    for path in sorted(Path(folder).glob("*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                instance, execution, key = json.loads(line)
            except (ValueError, TypeError):
                continue
            total += 1
            seen.add((instance, execution, json.dumps(key, sort_keys=True)))
    return {"total": total, "distinct": len(seen)}
