"""duroxide-pg: one stored-procedure call per provider method, its effect applied when the
statement commits, so races between dispatchers play out at the server as in PostgreSQL.

- `fetch_orchestration_item` takes every visible message of the instance with the oldest
  unlocked message and locks it (pg-cur migrations 0017/0019); messages arriving during the turn
  wait for the next fetch. Two fetches aimed at one instance: today the second moves on
  (`pg_advisory_xact_lock` + SKIP LOCKED re-check, duroxide-pg 4dc60a9); in duroxide-2025-11 it
  row-locked another message of the instance and deadlocked with the first until PostgreSQL's
  `deadlock_timeout` failed it (`RuntimeProfile.fetch_contention`).
- `ack_orchestration_item` writes history, enqueues the turn's activities and releases the lock
  in one call (migration 0020).
- `fetch_work_item` takes the oldest work item (`FOR UPDATE SKIP LOCKED`); `ack_work_item`
  deletes it and enqueues the completion (migration 0015).
- `fetch_history` reads an instance's history; `get_custom_status` its custom status.
Designs that do not exist in duroxide 0.2, for what-ifs (`Design`): batched worker fetch and ack,
LISTEN/NOTIFY wake-ups (a notify reaches the runtime half an RTT after the insert commits), the
pre-stored-procedure provider (several statements a call), a turn run inside the database, and
statements pipelined into one round trip.
Left out: history sizes, lock leases and renewals (turns here are far shorter than the 5 s
lease), poison handling, sessions and the 60 s gauge poller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import simpy

from durosim.model.breakdown import PARTS, TIMER, Path
from durosim.model.program import Turn
from durosim.model.queues import (
    CallLog,
    Claim,
    Instance,
    Message,
    OrchestratorQueue,
    WorkerQueue,
    WorkItem,
)
from durosim.sim.db import (
    Blocked,
    CallTimes,
    DbClient,
    FollowUp,
    PoolTimedOut,
    Statement,
    StatementFailed,
)
from durosim.sim.dispatch import Signal

_FAILED = object()

# Statements a call makes before the stored procedures (docs/seed/REMOTE_PERFORMANCE_ANALYSIS.md:
# "fetch_orchestration_item: 6-7 queries -> 1 call, ack_orchestration_item: 8-9 queries -> 1 call,
# append_history: N inserts -> 1 batch call"). The worker's calls are not given there and stay at
# one.
PRE_PROCEDURE_FETCH_STATEMENTS = 7
PRE_PROCEDURE_ACK_STATEMENTS = 8  # plus one insert per history event


class FetchFailed(Exception):
    """A provider call that returned an error (a deadlock victim)."""


class ProviderUnavailable(Exception):
    """A provider call that failed: retryable (the pool timed out, after the provider's own
    retries where it makes them) or permanent (the server shut down under the statement).
    duroxide's dispatchers back off from a retryable error and sleep 100 ms after a permanent
    one; the client's call fails."""

    def __init__(self, retryable: bool = True):
        super().__init__("retryable" if retryable else "permanent")
        self.retryable = retryable


ABANDON_DELAY_S = 0.1
"""The worker's `abandon_work_item` delay: visible again 100 ms after it commits (dx-cur
`worker.rs:733-758`)."""
# duroxide-pg retries a call that failed with a retryable error (PoolTimedOut among them) up to
# 3 more times, 50 ms x attempt apart (pg-cur `provider.rs:707-708`, `sqlx_to_provider_error`).
PROVIDER_RETRIES = 3
PROVIDER_RETRY_DELAY_S = 0.050


@dataclass(slots=True)
class Op:
    """One provider call: its statement, and what the caller gets from the statement's result
    and the call's timeline."""

    statement: Statement
    done: Callable[[object, CallTimes], object]
    caller: str = "client"
    """Who makes the call (a dispatcher slot "orch-0", "work-1", or "client"), for the pool's
    waiting time by caller (`caller_kind`)."""
    retried: bool = False
    """duroxide-pg retries the call's retryable errors (3 times, 50 ms x attempt apart): only
    `fetch_orchestration_item` and `ack_orchestration_item` (pg-cur `provider.rs:707-779,
    916-1102`)."""


CALLER_KINDS = {"orch": "orchestration slots", "work": "worker slots"}


def caller_kind(actor: str) -> str:
    """What kind of caller an actor is: a dispatcher slot ("orch-0", "work-1") or the client."""
    return CALLER_KINDS.get(actor[:4], "client")


class PostgresProvider:
    def __init__(
        self,
        env: simpy.Environment,
        db: DbClient,
        log: CallLog,
        contention: str,
        deadlock_timeout_s: float,
        deadlock_window_s: float,
        notify: bool = False,
        stored_procedures: bool = True,
        shared: PostgresProvider | None = None,
    ):
        """`shared`: another node's provider whose database (queues, locks, NOTIFY channels)
        this one uses."""
        self.env = env
        self.db = db
        self.log = log
        self.contention = contention
        self.deadlock_timeout_s = deadlock_timeout_s
        self.deadlock_window_s = deadlock_window_s
        self.notify = notify
        self.stored_procedures = stored_procedures
        self.timed_out = 0
        """Calls whose pool timed out (each attempt counts)."""
        self.advisory_wait_s = 0.0
        """Time fetches spent waiting on an instance's advisory lock, all together."""
        self.failed_statements = 0
        """Statements that reached a server that was down or had restarted (each attempt)."""
        self.repeated = 0
        """Activities run again after their first run was never acknowledged."""
        if shared is None:
            self.orchestrator_queue = OrchestratorQueue()
            self.worker_queue = WorkerQueue()
            self.orchestrator_signal = Signal(env)
            self.worker_signal = Signal(env)
        else:
            self.orchestrator_queue = shared.orchestrator_queue
            self.worker_queue = shared.worker_queue
            self.orchestrator_signal = shared.orchestrator_signal
            self.worker_signal = shared.worker_signal

    # -- running calls ------------------------------------------------------------------------

    def run(self, op: Op):
        """Generator: one call; what its `done` makes of the result. ProviderUnavailable when
        the pool timed out on every attempt."""
        try:
            [(result, times)] = yield from self.db.call_many((op.statement,), op.caller)
        except (PoolTimedOut, StatementFailed) as err:
            [(result, times)] = yield from self._retry([op.statement], op.caller, err, op.retried)
        self.log.connection, self.log.released_s = self.db.last_connection, self.db.last_released_s
        return op.done(result, times)

    def run_together(self, ops: list[Op]):
        """Generator: calls pipelined into one round trip (the pipelining what-if)."""
        statements = [op.statement for op in ops]
        try:
            results = yield from self.db.call_many(statements, ops[0].caller)
        except (PoolTimedOut, StatementFailed) as err:
            results = yield from self._retry(statements, ops[0].caller, err, ops[0].retried)
        self.log.connection, self.log.released_s = self.db.last_connection, self.db.last_released_s
        return [op.done(result, times) for op, (result, times) in zip(ops, results)]

    def _retry(self, statements: list[Statement], caller: str, first: Exception, retried: bool):
        """Generator: the provider's retries of a call whose pool timed out, where it makes
        them (the statements had no effect, so they run again as they are); a failed statement
        is a permanent error."""
        self._count(first)
        err = first
        for attempt in range(PROVIDER_RETRIES if retried else 0):
            if isinstance(err, StatementFailed):
                break
            yield self.env.timeout(PROVIDER_RETRY_DELAY_S * (attempt + 1))
            try:
                return (yield from self.db.call_many(statements, caller))
            except (PoolTimedOut, StatementFailed) as again:
                self._count(again)
                err = again
        raise ProviderUnavailable(retryable=not isinstance(err, StatementFailed))

    def _count(self, err: Exception) -> None:
        if isinstance(err, PoolTimedOut):
            self.timed_out += 1
        else:
            self.failed_statements += 1

    def _signal(self, signal: Signal) -> None:
        """An insert's NOTIFY reaches the runtime's listener half a round trip after commit."""
        if self.notify:
            delay = self.db.link.rtt() / 2.0
            self.env.timeout(delay).callbacks.append(lambda _event: signal.fire())

    # -- failed acks and locks that expire --------------------------------------------------

    def expire_turn(
        self, instance: Instance, messages: list[Message], turn: Turn, until: float
    ) -> None:
        """A turn whose ack failed: unless a later ack of the same fetch commits first, the
        instance stays locked until `until` (its lock timeout from the fetch; duroxide's abandon
        after a failed ack is built and dropped, never run: dx-cur `orchestration.rs:1188-1192`),
        then its messages are fetched again and the turn carries on from where it was."""
        serial = instance.taken

        def expire(_event) -> None:
            if instance.locked and instance.taken == serial:
                instance.replay = (turn, set(messages))
                self.orchestrator_queue.restore(instance, messages, self.env._now)
                self._signal(self.orchestrator_signal)

        self.env.timeout(max(0.0, until - self.env._now)).callbacks.append(expire)

    def fail_turn(self, instance: Instance, until: float, actor: str) -> Op:
        """The ack duroxide makes after its turn's ack failed for good: the orchestration
        Failed (an infrastructure error), committed only while the instance lock holds
        ("Invalid lock token" after; dx-cur `orchestration.rs:930-1006`)."""

        def commit(times: CallTimes) -> bool:
            if times.commit_s >= until or not instance.locked:
                return False
            failed = Turn()
            failed.completes = True
            instance.execution.failed = True
            self._ack_effects(instance, failed, times.commit_s, [0.0] * len(PARTS))
            return True

        def done(failed, times):
            self.log.note("ack_orchestration_item", instance, times, actor)
            return failed

        return Op(Statement("ack_orchestration_item", commit), done, actor, retried=True)

    def abandon_work(self, items: list[WorkItem], actor: str) -> Op:
        """`abandon_work_item(token, 100 ms)` after an activity's ack failed: the item is
        visible again 100 ms after it commits, and runs again (dx-cur `worker.rs:733-758`)."""

        def commit(times: CallTimes) -> None:
            self.expire_work(items, times.commit_s + ABANDON_DELAY_S)

        return Op(Statement("abandon_work_item", commit), lambda _, times: times, actor)

    def expire_work(self, items: list[WorkItem], until: float) -> None:
        """Work items fetchable again at `until`: 100 ms after an abandon commits, or, when the
        ack and the abandon both failed or the node crashed, when the worker lock expires."""

        def expire(_event) -> None:
            self.worker_queue.put_back(items, self.env._now)
            self._signal(self.worker_signal)

        self.env.timeout(max(0.0, until - self.env._now)).callbacks.append(expire)

    def ran(self, items: list[WorkItem]) -> None:
        """Count the activities a worker starts to run."""
        for item in items:
            item.runs += 1
            if item.runs > 1:
                self.repeated += 1

    # -- the orchestrator queue ---------------------------------------------------------------

    def _queue(
        self, instance: Instance, kind: str, now: float, path: Path, token: object = None
    ) -> None:
        self.orchestrator_queue.put(instance, kind, now, path, token)
        self._signal(self.orchestrator_signal)

    def _claiming_begin(self, claim: Claim, victim_of: list, empty_key: str, key: str):
        queue = self.orchestrator_queue
        deadlocks = self.contention == "deadlock"
        if self.contention == "advisory":
            return self._advisory_begin(claim, empty_key, key)

        def begin(now: float) -> tuple[str, float]:
            target = queue.oldest_unlocked(now, skip_claimed=not deadlocks)
            if target is None:
                return empty_key, now
            holder = target.claimed_by
            if holder is not None:
                # This fetch locked another message row of the instance and waits on the
                # holder's instance lock while the holder's update waits on that row: a deadlock
                # that PostgreSQL's check breaks after deadlock_timeout by failing this fetch.
                until = now + self.deadlock_timeout_s
                holder.rows += 1
                holder.blocked_until = max(holder.blocked_until, until)
                victim_of[0] = holder
                return empty_key, until
            claim.instance = target
            claim.settled_at = now + (self.deadlock_window_s if deadlocks else 0.0)
            target.claimed_by = claim
            return key, now

        return begin

    def _advisory_begin(self, claim: Claim, empty_key: str, key: str):
        """duroxide-0.2's fetch at the server: the oldest visible instance, its advisory lock
        (waiting for the fetches queued on it to end their transactions), then the claim, or,
        when another fetch claimed it first, an empty result once this one's turn at the lock
        and its re-check are over. Returns (cost key, earliest finish)."""
        queue = self.orchestrator_queue
        server = self.db.server
        recheck_s = server.cost[empty_key].mean if empty_key in server.cost else 0.0
        fetch_s = server.cost[key].mean if key in server.cost else 0.0

        def begin(now: float) -> tuple[str, float]:
            target = queue.oldest_visible()
            if target is None:
                return empty_key, now
            ready, waited = now, False
            if target.claimed_by is not None:
                # its turn at the lock, the re-check finds the instance taken, and the loop
                # looks again: the next instance nobody claimed, or nothing
                free = target.advisory_free_at
                if free > now:
                    self.advisory_wait_s += free - now
                ready = (free if free > now else now) + recheck_s
                target.advisory_free_at = ready  # admitted() makes it this fetch's commit
                claim.held = target
                target = queue.oldest_visible(unclaimed=True)
                if target is None:
                    return empty_key, ready
                waited = True
            claim.instance = target
            claim.settled_at = now
            target.claimed_by = claim
            free = target.advisory_free_at
            start = free if free > ready else ready
            self.advisory_wait_s += start - ready
            target.advisory_free_at = start + fetch_s  # admitted() makes it the real finish
            if waited or free > now:  # its work starts when the lock is its own
                return key, start + fetch_s
            return key, now

        return begin

    def _advisory_admitted(self, claim: Claim):
        """A fetch holds the advisory locks it took until its transaction ends: the one on the
        instance it claims, and the one it waited for before finding that instance claimed
        (`pg_advisory_xact_lock` is a transaction's lock, and the loop of duroxide-pg's fetch
        goes on to the next instance with it held: migrations 0017/0019). So the fetches
        queued on one lock pass it one whole transaction at a time, not one re-check."""

        def admitted(finish: float) -> None:
            for instance in (claim.instance, claim.held):
                if instance is not None and finish > instance.advisory_free_at:
                    instance.advisory_free_at = finish

        return admitted

    def _take_claimed(self, claim: Claim, victim_of: list, now: float):
        if victim_of[0] is not None:
            # The victim's row lock passes to the holder's update, which goes on.
            return _FAILED
        instance = claim.instance
        if instance is None:
            return None
        if claim.blocked_until > now:
            return Blocked(claim.blocked_until)
        instance.claimed_by = None
        return instance, self.orchestrator_queue.take_all(instance, now)

    def _fetched(self, label: str, actor: str, result, times: CallTimes):
        if result is _FAILED:
            self.log.note(label + " (error)", None, times, actor)
            raise FetchFailed()
        if result is None:
            self.log.note(label + " (empty)", None, times, actor)
            return None, times
        self.log.note(label, result[0], times, actor)
        return result, times

    def _claiming_op(self, label: str, actor: str, after_take: Callable) -> Op:
        """A call that claims the instance with the oldest message, takes its messages at
        commit and hands them to `after_take(taken, times)`."""
        claim = Claim()
        victim_of: list[Claim | None] = [None]

        def commit(times: CallTimes):
            taken = self._take_claimed(claim, victim_of, times.commit_s)
            if taken is None or taken is _FAILED or isinstance(taken, Blocked):
                return taken
            return after_take(taken, times)

        begin = self._claiming_begin(claim, victim_of, "fetch_orchestration_item_empty", label)
        admitted = self._advisory_admitted(claim) if self.contention == "advisory" else None
        return Op(
            Statement(label, commit, begin, admitted=admitted),
            lambda result, times: self._fetched(label, actor, result, times),
            actor,
            retried=True,
        )

    def fetch_orchestration_item(self, actor: str) -> Op:
        """((instance, messages) or None, times); FetchFailed for a deadlock victim."""

        def after_take(taken, times):
            if self.stored_procedures:
                return taken
            return FollowUp(PRE_PROCEDURE_FETCH_STATEMENTS - 1, taken)

        return self._claiming_op("fetch_orchestration_item", actor, after_take)

    def _ack_effects(self, instance: Instance, turn: Turn, now: float, path: Path) -> None:
        for thread, duration in turn.activities:
            self.worker_queue.put(WorkItem(instance, now, path, thread, duration))
        if turn.activities:
            self._signal(self.worker_signal)
        for thread, delay in turn.timers:
            self._fire_later(instance, thread, now + delay, path, delay)
        for thread, program in turn.children:
            queue = self.orchestrator_queue
            queue.spawned += 1
            child = Instance(
                f"{instance.name}::sub::{queue.spawned}", -queue.spawned, now, instance.measured,
                program, (instance, thread),
            )  # fmt: skip
            self._queue(child, "start", now, path)
        if turn.restarts:
            self._queue(instance, "start", now, path)
        if turn.completes:
            instance.done_at = now
            instance.done_path = path
            instance.failed = instance.execution.failed
            if instance.done_event is not None:
                instance.done_event.succeed()
            if instance.parent is not None:
                parent, thread = instance.parent
                kind = "child_failed" if instance.failed else "child_done"
                self._queue(parent, kind, now, path, thread)
        self.orchestrator_queue.unlock(instance, now, path)

    def _fire_later(self, instance: Instance, thread, fire_at: float, path: Path, delay: float):
        """A durable timer: a message that becomes visible to fetches when it fires."""
        fired = path.copy()
        fired[TIMER] += delay

        def fire(_event) -> None:
            self._queue(instance, "timer", fire_at, fired, thread)

        self.env.timeout(fire_at - self.env.now).callbacks.append(fire)

    def ack_orchestration_item(
        self,
        instance: Instance,
        turn: Turn,
        events: int,
        path_at: Callable[[CallTimes], Path],
        actor: str,
    ) -> Op:
        """Write the turn (`events` history events); enqueue what it scheduled; maybe complete;
        unlock. The caller gets (path at commit, times)."""

        def commit(times: CallTimes) -> Path:
            path = path_at(times)
            self._ack_effects(instance, turn, times.commit_s, path)
            return path

        def done(path, times):
            self.log.note("ack_orchestration_item", instance, times, actor)
            return path, times

        extra = 0 if self.stored_procedures else PRE_PROCEDURE_ACK_STATEMENTS - 1 + events
        return Op(
            Statement("ack_orchestration_item", commit, extra_round_trips=extra),
            done,
            actor,
            retried=True,
        )

    def orchestration_turn(
        self, actor: str, turn: Callable[[Instance, list[Message], CallTimes], tuple]
    ) -> Op:
        """A whole turn inside the database (a what-if): take the messages, run the turn, write
        it and unlock, in one call. `turn` returns (what the turn scheduled, path at commit)."""

        def after_take(taken, times):
            instance, messages = taken
            scheduled, path = turn(instance, messages, times)
            self._ack_effects(instance, scheduled, times.commit_s, path)
            return taken

        return self._claiming_op("orchestration_turn", actor, after_take)

    # -- the worker queue ---------------------------------------------------------------------

    def fetch_work_items(self, actor: str, limit: int = 1) -> Op:
        """(list of WorkItem or None, times)."""
        taken: list[list[WorkItem]] = [[]]

        def begin(now: float) -> tuple[str, float]:
            taken[0] = self.worker_queue.take(limit, now)
            return ("fetch_work_item" if taken[0] else "fetch_work_item_empty"), now

        def done(items, times):
            if not items:
                self.log.note("fetch_work_item (empty)", None, times, actor)
                return None, times
            for item in items:
                self.log.note("fetch_work_item", item.instance, times, actor)
            return items, times

        return Op(Statement("fetch_work_item", lambda times: taken[0], begin), done, actor)

    def ack_work_items(
        self, items: list[WorkItem], path_at: Callable[[WorkItem, CallTimes], Path], actor: str
    ) -> Op:
        """Delete the work items and enqueue their completions."""

        def commit(times: CallTimes) -> None:
            for item in items:
                self._queue(
                    item.instance, "completion", times.commit_s, path_at(item, times), item.token
                )

        def done(_, times):
            for item in items:
                self.log.note("ack_work_item", item.instance, times, actor)
            return times

        return Op(Statement("ack_work_item", commit), done, actor)

    # -- the client and reads -----------------------------------------------------------------

    def enqueue_orchestrator_work(
        self,
        instance: Instance,
        path_at: Callable[[CallTimes], Path],
        actor: str,
        kind: str = "start",
        token: object = None,
    ) -> Op:
        """The client's call that enqueues a `start` (or an external `event`, `raise_event`)."""

        def commit(times: CallTimes) -> None:
            self._queue(instance, kind, times.commit_s, path_at(times), token)

        def done(_, times):
            self.log.note("enqueue_orchestrator_work", instance, times, actor)
            return times

        return Op(Statement("enqueue_orchestrator_work", commit), done, actor)

    def fetch_history(self, instance: Instance, actor: str) -> Op:
        """(whether the instance's completion is committed, times)."""

        def done(finished, times):
            self.log.note("fetch_history", instance, times, actor)
            return finished, times

        return Op(
            Statement("fetch_history", lambda times: instance.done_at is not None),
            done,
            actor,
        )

    def get_custom_status(self, instance: Instance, actor: str) -> Op:
        def done(_, times):
            self.log.note("get_custom_status", instance, times, actor)
            return times

        return Op(Statement("get_custom_status", lambda times: None), done, actor)
