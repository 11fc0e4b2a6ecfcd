"""What an orchestration does in a turn: duroxide replays the orchestration function over its
history, folds in the messages the fetch took, and runs it on until every path waits; what it
scheduled on the way the turn's ack writes (dx-cur `orchestration.rs:529-937`). Here a workflow
(`durosim.model.workflows`) is compiled once into nodes with their random samplers, and each
instance keeps where each of its threads stands (a fan-out's branches are threads).

A turn's ack then enqueues (`durosim.model.provider`): one work item per activity, a timer
message that becomes visible when it fires, a start message per sub-orchestration (the child's
instance), a start message for the next execution after continue-as-new; a child's last turn
enqueues its completion to its parent. An external event is a message the client enqueues.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from durosim.model.workflows import Step, Workflow, width
from durosim.sim.dist import Dist

Sampler = Callable[[], float]
MakeSampler = Callable[[Dist, str], Sampler]
"""Makes the sampler of one distribution, given a name unique to the step and field (its random
stream's name)."""


class Node:
    """A step, compiled: its kind and what it needs at run time (samplers, the child program)."""

    __slots__ = (
        "kind", "duration", "choices", "branch", "child", "after", "times", "index",
        "failure_rate", "max_attempts",
    )  # fmt: skip

    def __init__(self, step: Step, index: int, name: str, make: MakeSampler):
        self.kind = step.kind
        self.index = index
        self.duration = None if step.duration is None else make(step.duration, f"{name}.duration")
        self.after = None if step.after is None else make(step.after, f"{name}.after")
        self.choices = step.n if isinstance(step.n, tuple) else (step.n,)
        self.branch = tuple(Node(s, i, f"{name}.{i + 1}", make) for i, s in enumerate(step.branch))
        self.child: Program | None = None
        self.times = step.times
        self.failure_rate = step.failure_rate
        self.max_attempts = step.max_attempts


class Program:
    """A workflow compiled for one replication."""

    __slots__ = ("name", "nodes", "weight", "events")

    def __init__(self, workflow: Workflow, make: MakeSampler):
        self.name = workflow.name
        self.weight = workflow.weight
        self.nodes = tuple(
            Node(s, i, f"{workflow.name}.{i + 1}", make) for i, s in enumerate(workflow.steps)
        )
        self.events = [n for n in self.nodes if n.kind == "event"]


def compile_workflows(workflows: tuple[Workflow, ...], make: MakeSampler) -> dict[str, Program]:
    programs = {w.name: Program(w, make) for w in workflows}

    def link(nodes: tuple[Node, ...], steps: tuple[Step, ...]) -> None:
        for node, step in zip(nodes, steps):
            if node.kind == "sub_orchestration":
                node.child = programs[step.workflow]
            link(node.branch, step.branch)

    for workflow in workflows:
        link(programs[workflow.name].nodes, workflow.steps)
    return programs


class Thread:
    """One path through a list of nodes: the node it is at, and whether that node's work is
    out (`waiting` results to come, or `branches` still running)."""

    __slots__ = ("nodes", "index", "issued", "waiting", "branches", "attempt", "retry")

    def __init__(self, nodes: tuple[Node, ...]):
        self.nodes = nodes
        self.index = 0
        self.issued = False
        self.waiting = 0
        self.branches: list[Thread] | None = None
        self.attempt = 0
        self.retry: str | None = None
        """An activity attempt failed with attempts left: `backoff` (schedule the timer),
        `waiting` (for it), `again` (schedule the next attempt)."""


def backoff_s(attempt: int) -> float:
    """duroxide's default retry backoff after the attempt-th failure: 100 ms doubling, at most
    30 s (dx-cur `lib.rs:1357-1386`)."""
    return min(0.1 * 2.0 ** (attempt - 1), 30.0)


class Turn:
    """What one turn scheduled, for its ack to write."""

    __slots__ = ("activities", "timers", "children", "completes", "restarts")

    def __init__(self) -> None:
        self.activities: list[tuple[Thread, Sampler]] = []
        self.timers: list[tuple[Thread, float]] = []
        self.children: list[tuple[Thread, Program]] = []
        self.completes = False
        self.restarts = False

    @property
    def scheduled(self) -> int:
        """History events for what the turn scheduled (activities, timers, children)."""
        return len(self.activities) + len(self.timers) + len(self.children)


class Execution:
    """Where one execution of a program stands, between turns."""

    __slots__ = ("program", "root", "restarts", "draw", "lost", "failed")

    def __init__(self, program: Program, draw: np.random.Generator | None, restarts: int = 0):
        self.program = program
        self.root = Thread(program.nodes)
        self.restarts = restarts
        self.draw = draw
        self.lost = 0
        self.failed = False
        """An activity failed on its last attempt: the orchestration fails."""

    def deliver(self, thread: Thread, kind: str) -> None:
        """An activity's completion, a timer or a child's completion for `thread`. An activity
        attempt fails with its node's failure rate; with attempts left the workflow backs off
        (a timer) and tries again, as `schedule_activity_with_retry` does (dx-cur
        `lib.rs:2931-2986`)."""
        thread.waiting -= 1
        if kind == "child_failed":
            self.failed = True
            return
        if thread.retry == "waiting" and kind == "timer":
            thread.retry = "again"
            return
        node = thread.nodes[thread.index]
        if kind != "completion" or node.kind != "activity" or not node.failure_rate:
            return
        if self.draw.random() < node.failure_rate:
            if thread.attempt < node.max_attempts:
                thread.retry = "backoff"
            else:
                self.failed = True

    def event(self, index: int) -> None:
        """An external event for the event node at `index` arrived. duroxide delivers it only
        to a wait recorded in an earlier turn; one that arrives before (or in the turn that
        reaches the wait) stays in the history unread, and the wait goes on (dx-cur
        `replay_engine.rs:942-958`, docs/reference/workflow-mechanisms.md §3)."""
        root = self.root
        if root.index == index and root.issued and root.waiting:
            root.waiting = 0
        else:
            self.lost += 1

    def run(self, turn: Turn) -> None:
        """Run on until every thread waits; fill `turn` with what that scheduled."""
        if self.failed or self._advance(self.root, turn):
            turn.completes = True

    def _advance(self, thread: Thread, turn: Turn) -> bool:
        """Advance one thread; True once it has run its last node."""
        while True:
            if thread.branches is not None:
                thread.branches = [b for b in thread.branches if not self._advance(b, turn)]
                if thread.branches:
                    return False
                thread.branches = None
            elif thread.waiting:
                return False
            if thread.retry == "backoff":
                thread.retry = "waiting"
                turn.timers.append((thread, backoff_s(thread.attempt)))
                thread.waiting = 1
                continue
            if thread.retry == "again":
                thread.retry = None
                thread.attempt += 1
                turn.activities.append((thread, thread.nodes[thread.index].duration))
                thread.waiting = 1
                continue
            if thread.issued:
                thread.index += 1
                thread.issued = False
            if thread.index >= len(thread.nodes):
                return True
            node = thread.nodes[thread.index]
            thread.issued = True
            kind = node.kind
            if kind == "activity":
                turn.activities.append((thread, node.duration))
                thread.waiting = 1
                thread.attempt = 1
            elif kind == "fanout":
                n = width(node.choices, self.draw)
                if node.branch:
                    thread.branches = [Thread(node.branch) for _ in range(n)]
                else:
                    turn.activities.extend((thread, node.duration) for _ in range(n))
                    thread.waiting = n
            elif kind == "timer":
                turn.timers.append((thread, node.duration()))
                thread.waiting = 1
            elif kind == "sub_orchestration":
                turn.children.append((thread, node.child))
                thread.waiting = 1
            elif kind == "event":
                thread.waiting = 1
                continue
            elif kind == "continue_as_new":
                if self.restarts < node.times:
                    turn.restarts = True
                    return False
                continue
