"""duroxide's dispatchers: orchestration slots that run turns and worker slots that run
activities, each slot one item at a time (dx-cur `src/runtime/dispatchers/*.rs`).

An orchestration turn is `fetch_orchestration_item` then `ack_orchestration_item`; replay runs in
memory and makes no provider calls (dx-cur `orchestration.rs:390-460, 1119+`). The workflow is a
fan-out/fan-in: the first turn schedules all its activities (they are enqueued by the ack), each
later turn folds in the completions it fetched, and the turn that has them all completes the
orchestration. An activity is `fetch_work_item`, `fetch_history` (the activity context reads the
orchestration's history: dx-cur `worker.rs:467, 507-512`), the activity's own run time, then
`ack_work_item`, which enqueues the completion (`worker.rs:610+`).

In duroxide-2025-11 an empty orchestration fetch is retried inside the provider before the
dispatcher sleeps, and a fetch that fails (a deadlock victim) makes the dispatcher sleep as if
it were empty. Replay CPU (about 0.3 ms a turn in the lab's log) is left out.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from models.breakdown import ACTIVITY, Path, extend
from models.profiles import RuntimeProfile
from models.provider import FetchFailed, PostgresProvider
from sim.dispatch import Dispatcher, MinPollInterval, SleepAfterEmpty


class Runtime:
    def __init__(
        self,
        env: simpy.Environment,
        provider: PostgresProvider,
        profile: RuntimeProfile,
        orchestration_concurrency: int,
        worker_concurrency: int,
        poll_interval_s: float,
        fanout: int,
        activity_s: Callable[[], float],
    ):
        self.env = env
        self.provider = provider
        self.profile = profile
        self.fanout = fanout
        self.activity_s = activity_s
        if profile.idle == "min_poll_interval":
            wakeup = MinPollInterval(poll_interval_s)
        else:
            wakeup = SleepAfterEmpty(poll_interval_s)
        self.orchestrators = [
            Dispatcher(env, f"orch-{i}", self.fetch_turn, self.run_turn, wakeup)
            for i in range(orchestration_concurrency)
        ]
        self.workers = [
            Dispatcher(env, f"work-{i}", self.fetch_activity, self.run_activity, wakeup)
            for i in range(worker_concurrency)
        ]

    def fetch_turn(self, slot: Dispatcher):
        attempts = 1 + self.profile.empty_orchestration_retries
        for attempt in range(attempts):
            try:
                got, times = yield from self.provider.fetch_orchestration_item(slot.name)
            except FetchFailed:
                return None
            if got is not None:
                return got, times
            if attempt + 1 < attempts:
                yield self.env.timeout(self.profile.empty_retry_sleep_s)
        return None

    def run_turn(self, fetched, slot: Dispatcher):
        (instance, messages), times = fetched
        ready, before = instance.unlocked_at, instance.unlock_path
        completions = 0
        starts = False
        for message in messages:
            if before is None or message.ready > ready:
                ready, before = message.ready, message.path
            if message.kind == "start":
                starts = True
            else:
                completions += 1
        path = extend(before, ready, times, to_commit=False, busy_until=slot.free_since)
        instance.turns += 1
        items = 0
        if starts and not instance.scheduled:
            instance.scheduled = True
            items = self.fanout
        instance.completions += completions
        completes = instance.completions >= self.fanout
        fetched_at = times[5]
        yield from self.provider.ack_orchestration_item(
            instance, items, completes, lambda t: extend(path, fetched_at, t, True), slot.name
        )

    def fetch_activity(self, slot: Dispatcher):
        item, times = yield from self.provider.fetch_work_item(slot.name)
        if item is None:
            return None
        return item, times

    def run_activity(self, fetched, slot: Dispatcher):
        item, times = fetched
        path: Path = extend(
            item.path, item.ready, times, to_commit=False, busy_until=slot.free_since
        )
        _, read = yield from self.provider.fetch_history(item.instance, slot.name)
        path = extend(path, times[5], read, to_commit=False)
        run = self.activity_s()
        if run > 0:
            yield self.env.timeout(run)
        path[ACTIVITY] += run
        ran_until = self.env.now
        yield from self.provider.ack_work_item(
            item.instance, lambda t: extend(path, ran_until, t, True), slot.name
        )
