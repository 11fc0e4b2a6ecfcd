"""duroxide's dispatchers: orchestration slots that run turns and worker slots that run
activities, each slot one item at a time (dx-cur `src/runtime/dispatchers/*.rs`).

An orchestration turn is `fetch_orchestration_item` then `ack_orchestration_item`; replay runs in
memory and makes no provider calls (dx-cur `orchestration.rs:390-460, 1119+`). A turn folds in
the messages it fetched and runs the workflow on (`durosim.model.program`): what that schedules
(activities, timers, children, the next execution) its ack writes, and the turn that finishes the
last step completes the orchestration (for today's fan-out: the first turn schedules all its
activities, each later turn folds in the completions it fetched, the one that has them all
completes). An activity is `fetch_work_item`, `fetch_history` (the activity context reads the
orchestration's history: dx-cur `worker.rs:467, 507-512`), the activity's own run time, then
`ack_work_item`, which enqueues the completion (`worker.rs:610+`).

In duroxide-2025-11 an empty orchestration fetch is retried inside the provider before the
dispatcher sleeps, and a fetch that fails (a deadlock victim) makes the dispatcher sleep as if
it were empty. Replay CPU (about 0.3 ms a turn in the lab's log) is left out. What-if designs
(`Design`) change the calls, never the workflow.
"""

from __future__ import annotations

import numpy as np
import simpy

from durosim.model.breakdown import ACTIVITY, SLOT_BUSY, Path, extend
from durosim.model.profiles import RuntimeProfile
from durosim.model.program import Execution, Turn
from durosim.model.provider import FetchFailed, PostgresProvider, ProviderUnavailable
from durosim.model.queues import Instance, Message, WorkItem
from durosim.model.scenario import Design
from durosim.sim.db import NodeDown
from durosim.sim.dispatch import Dispatcher, MinPollInterval, Notify, SleepAfterEmpty

ACK_RETRIES = 5
ACK_RETRY_BASE_S = 0.010


class Runtime:
    def __init__(
        self,
        env: simpy.Environment,
        provider: PostgresProvider,
        profile: RuntimeProfile,
        orchestration_concurrency: int,
        worker_concurrency: int,
        poll_interval_s: float,
        draw: np.random.Generator,
        design: Design,
        lock_timeouts_s: tuple[float, float] = (5.0, 30.0),
    ):
        """`lock_timeouts_s`: the orchestrator's and the worker's lock timeouts, after which
        what a failed ack left locked is fetched again."""
        self.env = env
        self.lock_timeouts_s = lock_timeouts_s
        self.provider = provider
        self.profile = profile
        self.draw = draw
        self.design = design
        self.prefetched: dict[Dispatcher, tuple] = {}

        def wakeup(signal):
            if design.long_poll:
                return Notify(signal, design.long_poll_timeout_s)
            if profile.idle == "min_poll_interval":
                return MinPollInterval(poll_interval_s)
            return SleepAfterEmpty(poll_interval_s)

        self.orchestrators = [
            Dispatcher(env, f"orch-{i}", self.fetch_turn, self.run_turn,
                       wakeup(provider.orchestrator_signal), ProviderUnavailable)
            for i in range(orchestration_concurrency)
        ]  # fmt: skip
        self.workers = [
            Dispatcher(env, f"work-{i}", self.fetch_activity, self.run_activity,
                       wakeup(provider.worker_signal), ProviderUnavailable)
            for i in range(worker_concurrency)
        ]  # fmt: skip

    # -- orchestration turns ------------------------------------------------------------------

    def _turn_op(self, slot: Dispatcher):
        if self.design.server_side_turns:
            return self.provider.orchestration_turn(
                slot.name, lambda inst, msgs, times: self._turn_in_database(inst, msgs, times, slot)
            )
        return self.provider.fetch_orchestration_item(slot.name)

    def fetch_turn(self, slot: Dispatcher):
        if slot in self.prefetched:
            # the fetch rode with the slot's last ack (pipelining)
            got = self.prefetched.pop(slot)
            return got if got[0] is not None else None
        attempts = 1 + self.profile.empty_orchestration_retries
        for attempt in range(attempts):
            try:
                got, times = yield from self.provider.run(self._turn_op(slot))
            except FetchFailed:
                return None
            if got is not None:
                return got, times
            if attempt + 1 < attempts:
                yield self.env.timeout(self.profile.empty_retry_sleep_s)
        return None

    def _turn(self, instance: Instance, messages: list[Message]) -> tuple[Turn, int, Path, float]:
        """Fold the messages into the instance and run it on: (what the turn scheduled, history
        events written, the critical path's predecessor, and when it was ready)."""
        ready, before = instance.unlocked_at, instance.unlock_path
        delivered = 0
        starts = False
        turn, folded = Turn(), ()
        if instance.replay is not None:  # the turn before it was never acknowledged
            turn, folded = instance.replay
            instance.replay = None
        for message in messages:
            if before is None or message.ready > ready:
                ready, before = message.ready, message.path
            kind = message.kind
            if message in folded:  # folded into the turn already: counted, not delivered again
                if kind == "start":
                    starts = True
                else:
                    delivered += 1
                continue
            if kind == "start":
                starts = True
                old = instance.execution
                restarts = 0 if old is None else old.restarts + 1
                instance.execution = Execution(instance.program, self.draw, restarts)
                continue
            delivered += 1
            if kind == "event":
                instance.execution.event(message.token)
            else:  # an activity's completion, a timer, a child's completion
                instance.execution.deliver(message.token, kind)
        instance.top.turns += 1
        instance.execution.run(turn)
        ends = turn.completes or turn.restarts
        events = (1 if starts else 0) + turn.scheduled + delivered + (1 if ends else 0)
        return turn, events, before, ready

    def _turn_in_database(self, instance, messages, times, slot):
        turn, _, before, ready = self._turn(instance, messages)
        path = extend(before, ready, times, to_commit=True, busy_until=slot.free_since)
        return turn, path

    def run_turn(self, fetched, slot: Dispatcher):
        if self.design.server_side_turns:
            yield from ()  # the whole turn ran inside the fetch
            return
        (instance, messages), times = fetched
        turn, events, before, ready = self._turn(instance, messages)
        path = extend(before, ready, times, to_commit=False, busy_until=slot.free_since)
        fetched_at = times.end_s
        ack = self.provider.ack_orchestration_item(
            instance,
            turn,
            events,
            lambda t: extend(path, fetched_at, t, True),
            slot.name,
        )
        until = times.commit_s + self.lock_timeouts_s[0]
        try:
            if not self.design.pipelining:
                yield from self._ack_turn(ack)
                return
            try:
                _, nxt = yield from self.provider.run_together([ack, self._turn_op(slot)])
                self.prefetched[slot] = nxt
            except FetchFailed:
                pass
        except (NodeDown, ProviderUnavailable) as err:
            self.provider.expire_turn(instance, messages, turn, until)
            if isinstance(err, NodeDown):
                raise
            # duroxide then writes the orchestration Failed, through the same retries
            yield from self._ack_turn(self.provider.fail_turn(instance, until, slot.name))

    def _ack_turn(self, ack):
        """Generator: an orchestration ack with the runtime's retries of a retryable error: 5
        more attempts, 10 ms x 2^n apart (dx-cur `orchestration.rs:1149-1196`); a permanent error
        is not retried."""
        for attempt in range(ACK_RETRIES + 1):
            try:
                return (yield from self.provider.run(ack))
            except ProviderUnavailable as err:
                if not err.retryable or attempt == ACK_RETRIES:
                    raise
            yield self.env.timeout(ACK_RETRY_BASE_S * 2**attempt)

    # -- activities ---------------------------------------------------------------------------

    def fetch_activity(self, slot: Dispatcher):
        if slot in self.prefetched:
            got = self.prefetched.pop(slot)
            return got if got[0] is not None else None
        items, times = yield from self.provider.run(
            self.provider.fetch_work_items(slot.name, self.design.worker_batch_size)
        )
        if items is None:
            return None
        return items, times

    def run_activity(self, fetched, slot: Dispatcher):
        items, times = fetched
        until = times.commit_s + self.lock_timeouts_s[1]
        try:
            yield from self._activity(items, times, slot)
        except NodeDown:
            self.provider.expire_work(items, until)
            raise
        except ProviderUnavailable:
            # one ack, no retry; then abandon_work_item (its result ignored): if that fails
            # too, the lock expires (dx-cur `worker.rs:634-758`)
            try:
                yield from self.provider.run(self.provider.abandon_work(items, slot.name))
            except ProviderUnavailable:
                self.provider.expire_work(items, until)

    def _activity(self, items: list[WorkItem], times, slot: Dispatcher):
        env = self.env
        paths: dict[WorkItem, Path] = {
            item: extend(item.path, item.ready, times, to_commit=False, busy_until=slot.free_since)
            for item in items
        }
        if self.design.activity_context_read:
            read_at = times.end_s
            for instance in dict.fromkeys(item.instance for item in items):
                _, read = yield from self.provider.run(
                    self.provider.fetch_history(instance, slot.name)
                )
                for item in items:
                    paths[item] = extend(paths[item], read_at, read, to_commit=False)
                read_at = read.end_s
        self.provider.ran(items)
        runs = {item: item.duration() for item in items}
        longest = max(runs.values())
        if longest > 0:
            yield env.timeout(longest)
        for item, run in runs.items():
            paths[item][ACTIVITY] += run
            paths[item][SLOT_BUSY] += longest - run  # waiting for the batch's longest activity
        ran_until = env._now
        ack = self.provider.ack_work_items(
            items, lambda item, t: extend(paths[item], ran_until, t, True), slot.name
        )
        if not self.design.pipelining:
            yield from self.provider.run(ack)
            return
        _, nxt = yield from self.provider.run_together(
            [ack, self.provider.fetch_work_items(slot.name, self.design.worker_batch_size)]
        )
        self.prefetched[slot] = nxt
