"""duroxide-pg: the queues and the instance locks in PostgreSQL, and one stored-procedure call
per provider method.

State (what the tables hold): the orchestrator queue (messages per instance, in arrival order),
the instance locks, the worker queue (FIFO), and each instance's completion. Each method is one
`DbClient.call`; its effect applies when the statement commits, so races between dispatchers
play out at the server, as they do in PostgreSQL:
- `fetch_orchestration_item` takes every visible message of the instance with the oldest
  unlocked message and locks it (pg-cur migrations 0017/0019). Messages that arrive during the
  turn wait for the next fetch. What happens when two fetches aim at one instance at once depends
  on the runtime profile (`RuntimeProfile.fetch_contention`).
- `ack_orchestration_item` writes history, enqueues the turn's activities and releases the lock
  in one call (migration 0020).
- `fetch_work_item` takes the oldest unlocked work item (`FOR UPDATE SKIP LOCKED`); `ack_work_item`
  deletes it and enqueues the completion (migration 0015).
- `fetch_history` reads an instance's history; `get_custom_status` its custom status.
Left out: history sizes (no effect on cost at these sizes), lock leases and their renewal (turns
here are far shorter than the 5 s lease), poison handling, sessions and the 60 s gauge poller.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from models.breakdown import Path
from sim.db import Blocked, CallTimes, DbClient

_FAILED = object()


class Message:
    __slots__ = ("kind", "ready", "path", "number")

    def __init__(self, kind: str, ready: float, path: Path, number: int):
        self.kind = kind
        self.ready = ready
        self.path = path
        self.number = number


class Instance:
    __slots__ = (
        "name", "number", "started", "pending", "locked", "claimed_by", "unlocked_at",
        "unlock_path", "scheduled", "completions", "done_at", "done_path", "turns", "measured",
    )  # fmt: skip

    def __init__(self, name: str, number: int, started: float, measured: bool):
        self.name = name
        self.number = number
        self.started = started
        self.pending: list[Message] = []
        self.locked = False
        self.claimed_by: object | None = None
        self.unlocked_at = started
        self.unlock_path: Path | None = None
        self.scheduled = False
        self.completions = 0
        self.done_at: float | None = None
        self.done_path: Path | None = None
        self.turns = 0
        self.measured = measured


class WorkItem:
    __slots__ = ("instance", "ready", "path")

    def __init__(self, instance: Instance, ready: float, path: Path):
        self.instance = instance
        self.ready = ready
        self.path = path


class FetchFailed(Exception):
    """A provider call that returned an error (a deadlock victim)."""


class CallLog:
    """Counts provider calls by operation for the measured orchestrations; keeps call records
    when asked."""

    def __init__(self, keep_records: bool = False):
        self.counts: Counter[str] = Counter()
        self.measuring = False
        self.records: list[dict] | None = [] if keep_records else None

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
                    "start_ms": round(times[0] * 1000.0, 3),
                    "end_ms": round(times[5] * 1000.0, 3),
                }
            )


class _Claim:
    """An orchestration fetch's hold on an instance between its arrival and its commit."""

    __slots__ = ("instance", "rows", "settled_at", "blocked_until")

    def __init__(self) -> None:
        self.instance: Instance | None = None
        self.rows = 1
        self.settled_at = 0.0
        self.blocked_until = 0.0

    def settled(self, now: float) -> bool:
        """Whether the fetch's update has locked every message row of the instance."""
        return now >= self.settled_at and now >= self.blocked_until


class PostgresProvider:
    def __init__(
        self,
        db: DbClient,
        log: CallLog,
        contention: str,
        deadlock_timeout_s: float,
        deadlock_window_s: float,
    ):
        self.db = db
        self.log = log
        self.contention = contention
        self.deadlock_timeout_s = deadlock_timeout_s
        self.deadlock_window_s = deadlock_window_s
        self.waiting: dict[Instance, None] = {}  # instances with queued messages, insertion order
        self.work: list[WorkItem] = []
        self._work_head = 0
        self._numbers = 0
        self.failures = 0

    # -- the orchestrator queue ---------------------------------------------------------------

    def _next_number(self) -> int:
        self._numbers += 1
        return self._numbers

    def _queue(self, instance: Instance, kind: str, now: float, path: Path) -> None:
        instance.pending.append(Message(kind, now, path, self._next_number()))
        self.waiting[instance] = None

    def _oldest_unlocked(self, now: float, skip_claimed: bool) -> Instance | None:
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

    def fetch_orchestration_item(self, actor: str):
        """Generator: ((instance, messages) or None, times); FetchFailed for a deadlock victim."""
        claim = _Claim()
        victim_of: list[_Claim | None] = [None]

        def begin(now: float) -> tuple[str, float]:
            deadlocks = self.contention == "deadlock"
            target = self._oldest_unlocked(now, skip_claimed=not deadlocks)
            if target is None:
                return "fetch_orchestration_item_empty", now
            holder = target.claimed_by
            if holder is not None:
                # This fetch locked another message row of the instance and waits on the
                # holder's instance lock while the holder's update waits on that row: a deadlock
                # that PostgreSQL's check breaks after deadlock_timeout by failing this fetch.
                until = now + self.deadlock_timeout_s
                holder.rows += 1
                holder.blocked_until = max(holder.blocked_until, until)
                victim_of[0] = holder
                return "fetch_orchestration_item_empty", until
            claim.instance = target
            claim.settled_at = now + (self.deadlock_window_s if deadlocks else 0.0)
            target.claimed_by = claim
            return "fetch_orchestration_item", now

        def commit(times: CallTimes):
            now = times[3]
            if victim_of[0] is not None:
                # The victim's row lock passes to the holder's update, which goes on.
                return _FAILED
            instance = claim.instance
            if instance is None:
                return None
            if claim.blocked_until > now:
                return Blocked(claim.blocked_until)
            instance.claimed_by = None
            messages = instance.pending
            instance.pending = []
            instance.locked = True
            del self.waiting[instance]
            return instance, messages

        result, times = yield from self.db.call("fetch_orchestration_item", commit, begin)
        if result is _FAILED:
            self.failures += 1
            self.log.note("fetch_orchestration_item (error)", None, times, actor)
            raise FetchFailed()
        if result is None:
            self.log.note("fetch_orchestration_item (empty)", None, times, actor)
            return None, times
        self.log.note("fetch_orchestration_item", result[0], times, actor)
        return result, times

    def ack_orchestration_item(
        self,
        instance: Instance,
        items: int,
        completes: bool,
        path_at: Callable[[CallTimes], Path],
        actor: str,
    ):
        """Generator: write the turn; enqueue `items` activities; maybe complete; unlock."""

        def commit(times: CallTimes) -> Path:
            now = times[3]
            path = path_at(times)
            for _ in range(items):
                self.work.append(WorkItem(instance, now, path))
            if completes:
                instance.done_at = now
                instance.done_path = path
            instance.locked = False
            instance.unlocked_at = now
            instance.unlock_path = path
            if instance.pending:
                self.waiting[instance] = None
            return path

        path, times = yield from self.db.call("ack_orchestration_item", commit)
        self.log.note("ack_orchestration_item", instance, times, actor)
        return path, times

    # -- the worker queue ---------------------------------------------------------------------

    def fetch_work_item(self, actor: str):
        """Generator: (WorkItem or None, times)."""
        taken: list = [None]

        def begin(now: float) -> tuple[str, float]:
            if self._work_head < len(self.work):
                taken[0] = self.work[self._work_head]
                self._work_head += 1
                if self._work_head > 64 and self._work_head * 2 > len(self.work):
                    del self.work[: self._work_head]
                    self._work_head = 0
                return "fetch_work_item", now
            return "fetch_work_item_empty", now

        item, times = yield from self.db.call("fetch_work_item", lambda times: taken[0], begin)
        if item is None:
            self.log.note("fetch_work_item (empty)", None, times, actor)
        else:
            self.log.note("fetch_work_item", item.instance, times, actor)
        return item, times

    def ack_work_item(self, instance: Instance, path_at: Callable[[CallTimes], Path], actor: str):
        """Generator: delete the work item and enqueue its completion."""

        def commit(times: CallTimes) -> None:
            self._queue(instance, "completion", times[3], path_at(times))

        _, times = yield from self.db.call("ack_work_item", commit)
        self.log.note("ack_work_item", instance, times, actor)
        return times

    # -- reads and the client -----------------------------------------------------------------

    def enqueue_orchestrator_work(
        self, instance: Instance, path_at: Callable[[CallTimes], Path], actor: str
    ):
        def commit(times: CallTimes) -> None:
            self._queue(instance, "start", times[3], path_at(times))

        _, times = yield from self.db.call("enqueue_orchestrator_work", commit)
        self.log.note("enqueue_orchestrator_work", instance, times, actor)
        return times

    def fetch_history(self, instance: Instance, actor: str):
        """Generator: (whether the instance's completion is committed, times)."""
        done, times = yield from self.db.call(
            "fetch_history", lambda times: instance.done_at is not None
        )
        self.log.note("fetch_history", instance, times, actor)
        return done, times

    def get_custom_status(self, instance: Instance, actor: str):
        _, times = yield from self.db.call("get_custom_status", lambda times: None)
        self.log.note("get_custom_status", instance, times, actor)
        return times
