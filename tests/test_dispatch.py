"""Dispatcher loops and their wake-up strategies, as exact timelines."""

import pytest
import simpy

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
