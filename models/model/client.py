"""duroxide's client: `start_orchestration` and `wait_for_orchestration`.

Start is one `enqueue_orchestrator_work` call (dx-cur `client/mod.rs:234-253`). Wait checks the
status once at once, then loops check-then-sleep with sleeps of 5, 10, 20, 40, 80, 100, 100, ...
ms, so the first two checks run back to back (dx-cur `client/mod.rs:745-771`, constants at 92-98;
the same at the seed). A check is the profile's calls in order (`read` = `fetch_history`, then
`get_custom_status` today); the completion is seen by a `fetch_history` that commits after the
orchestration's final ack. The wait gives up after its timeout (checked at the top of the loop).
What-ifs: the check's calls pipelined into one round trip, or no polling at all (the client is
told of the completion, one message half a round trip after the final ack commits).
"""

from __future__ import annotations

import simpy

from durosim.model.breakdown import CLIENT_BACKOFF, EVENT_WAIT, NETWORK, empty, extend
from durosim.model.program import Node
from durosim.model.provider import PostgresProvider, ProviderUnavailable
from durosim.model.queues import Instance
from durosim.sim.network import Link


class Client:
    def __init__(
        self,
        env: simpy.Environment,
        provider: PostgresProvider,
        check_calls: tuple[str, ...],
        initial_delay_s: float,
        max_delay_s: float,
        pipelined: bool = False,
        notified_over: Link | None = None,
    ):
        self.env = env
        self.provider = provider
        self.extra_calls = len(check_calls) - 1
        self.initial_delay_s = initial_delay_s
        self.max_delay_s = max_delay_s
        self.pipelined = pipelined
        self.notified_over = notified_over

    def start(self, instance: Instance):
        """Generator: enqueue the StartOrchestration message."""
        began = self.env.now
        if self.notified_over is not None:
            instance.done_event = self.env.event()
        yield from self.provider.run(
            self.provider.enqueue_orchestrator_work(
                instance, lambda t: extend(empty(), began, t, True), "client"
            )
        )

    def raise_event(self, instance: Instance, node: Node):
        """Generator: `raise_event` for the event node, `node.after` after the orchestration's
        start: one `enqueue_orchestrator_work` call. The wait is on the path as `event_wait`."""
        delay = node.after() - (self.env.now - instance.started)
        if delay > 0:
            yield self.env.timeout(delay)
        began = self.env.now

        def path_at(times):
            path = empty()
            path[EVENT_WAIT] = began - instance.started
            return extend(path, began, times, True)

        try:
            yield from self.provider.run(
                self.provider.enqueue_orchestrator_work(
                    instance, path_at, "client", kind="event", token=node.index
                )
            )
        except ProviderUnavailable:
            pass  # the event is lost: the orchestration waits for it until the client gives up

    def check(self, instance: Instance):
        """Generator: one status check; the critical path to its end when it sees completion."""
        provider = self.provider
        read = provider.fetch_history(instance, "client")
        statuses = [provider.get_custom_status(instance, "client") for _ in range(self.extra_calls)]
        if self.pipelined and statuses:
            results = yield from provider.run_together([read, *statuses])
            (done, read_times), status_times = results[0], results[1:]
        else:
            done, read_times = yield from provider.run(read)
            status_times = []
            for status in statuses:
                status_times.append((yield from provider.run(status)))
        if not done:
            return None
        path = extend(instance.done_path, instance.done_at, read_times, False, CLIENT_BACKOFF)
        last = read_times.end_s
        for times in status_times:
            path = extend(path, last, times, False, CLIENT_BACKOFF)
            last = max(last, times.end_s)
        return path

    def wait(self, instance: Instance, timeout_s: float):
        """Generator: the critical path when the client sees completion, or None on timeout."""
        env = self.env
        if self.notified_over is not None:
            return (yield from self._wait_notified(instance, timeout_s))
        deadline = env._now + timeout_s
        path = yield from self.check(instance)
        delay = self.initial_delay_s
        while path is None and env._now < deadline:
            path = yield from self.check(instance)
            if path is None:
                yield env.timeout(delay)
                delay = min(delay * 2.0, self.max_delay_s)
        return path

    def _wait_notified(self, instance: Instance, timeout_s: float):
        env = self.env
        if instance.done_at is None:
            yield env.any_of([instance.done_event, env.timeout(timeout_s)])
            if instance.done_at is None:
                return None
        arrive = instance.done_at + self.notified_over.rtt() / 2.0
        if arrive > env._now:
            yield env.timeout(arrive - env._now)
        path = instance.done_path.copy()
        path[NETWORK] += env._now - instance.done_at
        return path
