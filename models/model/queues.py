"""What duroxide-pg's tables hold, as the model needs it: the orchestrator queue (messages per
instance, in arrival order), the instance locks and the in-flight claims of orchestration
fetches, the worker queue (FIFO), each instance's completion, and the calls made.

Choosing what a fetch takes follows the stored procedures: the oldest visible message whose
instance is not locked (`ORDER BY visible_at, id`), skipping rows other fetches hold (`SKIP
LOCKED`); see `durosim.model.provider` for the races between fetches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import simpy

from durosim.model.breakdown import Path
from durosim.sim.db import CallTimes
from durosim.sim.stats import Level

if TYPE_CHECKING:
    from durosim.model.program import Execution, Program, Thread


class Message:
    """An orchestrator-queue message: `start`, an activity's `completion`, a `timer` that fired,
    a child's `child_done`, or an external `event`; `token` says which waiting thread (or event
    node) it is for."""

    __slots__ = ("kind", "ready", "path", "number", "token")

    def __init__(self, kind: str, ready: float, path: Path, number: int, token: object = None):
        self.kind = kind
        self.ready = ready
        self.path = path
        self.number = number
        self.token = token


class Instance:
    __slots__ = (
        "name", "number", "started", "pending", "locked", "claimed_by", "unlocked_at",
        "unlock_path", "program", "execution", "parent", "done_at", "done_path", "done_event",
        "turns", "measured", "_top", "failed", "advisory_free_at", "replay", "taken",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        number: int,
        started: float,
        measured: bool,
        program: Program,
        parent: tuple[Instance, Thread] | None = None,
    ):
        self.name = name
        self.number = number
        self.started = started
        self.pending: list[Message] = []
        self.advisory_free_at = 0.0
        """When the last fetch queued on the instance's `pg_advisory_xact_lock` ends its
        transaction (duroxide-0.2's fetch takes it before claiming)."""
        self.locked = False
        self.taken = 0
        """Fetches that took its messages: tells a lock that expired from a later one."""
        self.replay: tuple | None = None
        """A turn whose ack never committed: (turn, the messages it folded in), which the turn
        after the lock expires carries on from instead of folding them in again."""
        self.claimed_by: Claim | None = None
        self.unlocked_at = started
        self.unlock_path: Path | None = None
        self.program = program
        self.execution: Execution | None = None
        self.parent = parent
        """A sub-orchestration's parent, and the parent's thread that waits for it."""
        self._top: Instance | None = None if parent is None else parent[0].top
        self.failed = False
        """It completed with a failure (an activity out of attempts, or a failed child)."""
        self.done_at: float | None = None
        self.done_path: Path | None = None
        self.done_event: simpy.Event | None = None
        self.turns = 0
        self.measured = measured

    @property
    def top(self) -> Instance:
        """The instance the client started (its turns count those of its children). Not kept
        on a top-level instance itself: a reference to itself would make every instance a
        cycle, which only the garbage collector frees."""
        return self if self._top is None else self._top


class WorkItem:
    __slots__ = ("instance", "ready", "path", "token", "duration", "runs")

    def __init__(
        self,
        instance: Instance,
        ready: float,
        path: Path,
        token: Thread | None = None,
        duration: Callable[[], float] | None = None,
    ):
        self.instance = instance
        self.ready = ready
        self.path = path
        self.token = token
        self.duration = duration
        self.runs = 0


class Claim:
    """An orchestration fetch's hold on an instance between its arrival and its commit."""

    __slots__ = ("instance", "held", "rows", "settled_at", "blocked_until")

    def __init__(self) -> None:
        self.instance: Instance | None = None
        self.held: Instance | None = None
        """An instance whose advisory lock the fetch waited for and found claimed: the lock
        is the transaction's, so the fetch holds it until it commits."""
        self.rows = 1
        self.settled_at = 0.0
        self.blocked_until = 0.0

    def settled(self, now: float) -> bool:
        """Whether the fetch's update has locked every message row of the instance."""
        return now >= self.settled_at and now >= self.blocked_until


class OrchestratorQueue:
    def __init__(self) -> None:
        self.waiting: dict[Instance, None] = {}  # instances with queued messages, in order
        self._numbers = 0
        self.spawned = 0  # sub-orchestration instances started
        self.depth = Level()  # messages queued (time-weighted)

    def put(
        self, instance: Instance, kind: str, now: float, path: Path, token: object = None
    ) -> None:
        self._numbers += 1
        instance.pending.append(Message(kind, now, path, self._numbers, token))
        self.waiting[instance] = None
        self.depth.set(now, self.depth.value + 1)

    def oldest_visible(self, unclaimed: bool = False) -> Instance | None:
        """The instance of the oldest message whose instance holds no committed lock: what the
        first select of duroxide-0.2's fetch finds (a claim not yet committed is invisible);
        `unclaimed`: what its loop finds after a re-check, past instances claimed since."""
        best: Instance | None = None
        best_number = 0
        for instance in self.waiting:
            if instance.locked or (unclaimed and instance.claimed_by is not None):
                continue
            number = instance.pending[0].number
            if best is None or number < best_number:
                best, best_number = instance, number
        return best

    def oldest_unlocked(self, now: float, skip_claimed: bool) -> Instance | None:
        """The instance of the oldest message a fetch arriving now can lock."""
        best: Instance | None = None
        best_number = 0
        for instance in self.waiting:
            if instance.locked:
                continue
            claim = instance.claimed_by
            first = 0
            if claim is not None:
                # The claiming fetch row-locked one message, and each fetch deadlocked with it
                # one more (SKIP LOCKED moves past them; a victim's row passes to the holder);
                # once its update has locked them all, a fetch skips the whole instance.
                if skip_claimed or claim.settled(now) or len(instance.pending) <= claim.rows:
                    continue
                first = claim.rows
            number = instance.pending[first].number
            if best is None or number < best_number:
                best, best_number = instance, number
        return best

    def take_all(self, instance: Instance, now: float) -> list[Message]:
        messages = instance.pending
        instance.pending = []
        instance.locked = True
        instance.taken += 1
        del self.waiting[instance]
        self.depth.set(now, self.depth.value - len(messages))
        return messages

    def restore(self, instance: Instance, messages: list[Message], now: float) -> None:
        """The instance's lock expired with its turn never acknowledged: the messages it took
        are visible again, before any that came since."""
        instance.pending = messages + instance.pending
        instance.locked = False
        if instance.pending:
            self.waiting[instance] = None
        self.depth.set(now, self.depth.value + len(messages))

    def unlock(self, instance: Instance, now: float, path: Path) -> None:
        instance.locked = False
        instance.unlocked_at = now
        instance.unlock_path = path
        if instance.pending:
            self.waiting[instance] = None


class WorkerQueue:
    def __init__(self) -> None:
        self._items: list[WorkItem] = []
        self._head = 0
        self.depth = Level()  # work items queued (time-weighted)

    def put(self, item: WorkItem) -> None:
        self._items.append(item)
        self.depth.set(item.ready, len(self))

    def take(self, limit: int, now: float) -> list[WorkItem]:
        taken = self._items[self._head : self._head + limit]
        self._head += len(taken)
        if taken:
            self.depth.set(now, len(self))
        if self._head > 64 and self._head * 2 > len(self._items):
            del self._items[: self._head]
            self._head = 0
        return taken

    def put_back(self, items: list[WorkItem], now: float) -> None:
        """Work items whose lock expired unacknowledged: the oldest again, so first."""
        self._items[self._head : self._head] = items
        self.depth.set(now, len(self))

    def __len__(self) -> int:
        return len(self._items) - self._head


class CallLog:
    """Counts provider calls by operation for the measured orchestrations; keeps call records
    when asked."""

    def __init__(self, keep_records: bool = False):
        self.counts: Counter[str] = Counter()
        self.measuring = False
        self.records: list[dict] | None = [] if keep_records else None
        self.connection = -1  # set by the provider before each note
        self.released_s = 0.0

    def note(self, label: str, instance: Instance | None, times: CallTimes, actor: str) -> None:
        # A call for an instance counts when the instance is measured; a call for none (an
        # empty poll) when it falls in the measured window.
        if instance.measured if instance is not None else self.measuring:
            self.counts[label] += 1
        if self.records is not None:
            self.records.append(
                {
                    "type": "call",
                    "op": label,
                    "instance": instance.name if instance else "",
                    "actor": actor,
                    "start_ms": round(times.start_s * 1000.0, 3),
                    "acquired_ms": round(times.acquired_s * 1000.0, 3),
                    "commit_ms": round(times.commit_s * 1000.0, 3),
                    "end_ms": round(times.end_s * 1000.0, 3),
                    "connection": self.connection,
                    "released_ms": round(self.released_s * 1000.0, 3),
                }
            )
