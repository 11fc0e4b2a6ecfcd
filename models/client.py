"""duroxide's client: `start_orchestration` and `wait_for_orchestration`.

Start is one `enqueue_orchestrator_work` call (dx-cur `client/mod.rs:234-253`). Wait checks the
status once at once, then loops check-then-sleep with sleeps of 5, 10, 20, 40, 80, 100, 100, ...
ms, so the first two checks run back to back (dx-cur `client/mod.rs:745-771`, constants at 92-98;
the same at the seed). A check is the profile's calls in order (`read` = `fetch_history`, then
`get_custom_status` today); the completion is seen by a `fetch_history` that commits after the
orchestration's final ack. The wait gives up after its timeout (checked at the top of the loop).
"""

from __future__ import annotations

import simpy

from models.breakdown import CLIENT_BACKOFF, Path, empty, extend
from models.provider import Instance, PostgresProvider


class Client:
    def __init__(
        self,
        env: simpy.Environment,
        provider: PostgresProvider,
        check_calls: tuple[str, ...],
        initial_delay_s: float,
        max_delay_s: float,
    ):
        self.env = env
        self.provider = provider
        self.extra_calls = len(check_calls) - 1
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s

    def start(self, instance: Instance):
        """Generator: enqueue the StartOrchestration message."""
        began = self.env.now
        yield from self.provider.enqueue_orchestrator_work(
            instance, lambda t: extend(empty(), began, t, True), "client"
        )

    def check(self, instance: Instance):
        """Generator: one status check; the critical path to its end when it sees completion."""
        done, read = yield from self.provider.fetch_history(instance, "client")
        path: Path | None = None
        if done:
            path = extend(instance.done_path, instance.done_at, read, False, CLIENT_BACKOFF)
        last = read[5]
        for _ in range(self.extra_calls):
            status = yield from self.provider.get_custom_status(instance, "client")
            if path is not None:
                path = extend(path, last, status, False, CLIENT_BACKOFF)
            last = status[5]
        return path

    def wait(self, instance: Instance, timeout_s: float):
        """Generator: the critical path when the client sees completion, or None on timeout."""
        env = self.env
        deadline = env.now + timeout_s
        path = yield from self.check(instance)
        delay = self.initial_delay_s
        while path is None and env.now < deadline:
            path = yield from self.check(instance)
            if path is None:
                yield env.timeout(delay)
                delay = min(delay * 2.0, self.max_delay_s)
        return path
