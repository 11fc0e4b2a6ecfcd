"""Dispatcher loops and their wake-up strategies, as exact timelines."""

import pytest
import simpy

from durosim.model.scenario import load
from durosim.model.world import simulate
from durosim.sim.dispatch import Dispatcher, MinPollInterval, SleepAfterEmpty


def run_loop(wakeup, fetch_s, until, items=()):
    env = simpy.Environment()
    fetches = []
    queue = list(items)

    def fetch(slot):
        fetches.append(round(env.now, 9))
        yield env.timeout(fetch_s)
        return queue.pop(0) if queue and queue[0] <= env.now else None

    def handle(item, slot):
        yield env.timeout(0.5)

    Dispatcher(env, "d", fetch, handle, wakeup)
    env.run(until=until)
    return fetches


def test_min_poll_interval_sleeps_the_rest_of_the_interval_from_the_fetch_start():
    assert run_loop(MinPollInterval(0.100), 0.030, 0.35) == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_min_poll_interval_polls_back_to_back_when_a_fetch_takes_longer():
    assert run_loop(MinPollInterval(0.100), 0.150, 0.5) == pytest.approx([0.0, 0.15, 0.3, 0.45])


def test_sleep_after_empty_adds_the_whole_interval():
    assert run_loop(SleepAfterEmpty(0.100), 0.030, 0.3) == pytest.approx([0.0, 0.13, 0.26])


def test_an_item_is_handled_and_the_next_fetch_follows_at_once():
    # the item is there from t=0.1; the fetch at 0.1 takes it at 0.13, handles until 0.63
    fetches = run_loop(MinPollInterval(0.100), 0.030, 0.7, items=[0.1])
    assert fetches == pytest.approx([0.0, 0.1, 0.63])


class Unavailable(Exception):
    pass


def test_a_retryable_error_backs_off_100_ms_doubling_to_3_s_and_resets_after_success():
    env = simpy.Environment()
    fetches = []
    outcomes = iter(["error"] * 7 + [None, "error", None])

    def fetch(slot):
        fetches.append(round(env.now, 9))
        yield env.timeout(0)
        outcome = next(outcomes, None)
        if outcome == "error":
            raise Unavailable()
        return None

    def handle(item, slot):
        yield env.timeout(0)

    slot = Dispatcher(env, "d", fetch, handle, MinPollInterval(0.1), Unavailable)
    env.run(until=14.0)
    gaps = [round(b - a, 6) for a, b in zip(fetches, fetches[1:])]
    # 200, 400, 800, 1600, 3000 (capped), 3000, 3000; an empty poll: the 100 ms interval;
    # an error after it starts the back-off afresh at 200 ms
    assert gaps[:9] == [0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0, 0.1, 0.2]
    assert slot.errors == 8


def test_an_error_that_is_not_retryable_is_not_swallowed():
    env = simpy.Environment()

    def fetch(slot):
        yield env.timeout(0)
        raise KeyError("a bug")

    Dispatcher(env, "d", fetch, lambda item, slot: iter(()), MinPollInterval(0.1), Unavailable)
    with pytest.raises(KeyError):
        env.run(until=1.0)


def test_idle_nodes_make_a_convoy_on_the_advisory_lock():
    """duroxide-0.2's orchestration fetch takes the oldest visible instance's advisory lock: the
    more nodes poll, the more fetches queue on it; the 2025-11 runtime takes no such lock."""
    base = ["runtime_options.dispatcher_poll_interval_ms=10", "network.rtt_ms=0.5",
            "workload.count=8"]  # fmt: skip

    def waiting(*extra: str) -> float:
        return simulate(load("lab", [*base, *extra]), 0).advisory_waiting

    alone, crowded = waiting(), waiting("host.nodes=9")
    assert crowded > 3 * alone and crowded > 0.5
    assert waiting('runtime="duroxide-2025-11"', "host.nodes=9") == 0.0
