"""The lean event loop processes exactly SimPy's events in SimPy's order."""

import random

import pytest
import simpy

from durosim.sim.kernel import Environment


def story(env: simpy.Environment, seed: int) -> list[tuple]:
    """Processes full of same-time ties (timeouts of 0 and 1), events, conditions and process
    ends: what happened when, in order."""
    rng = random.Random(seed)
    log: list[tuple] = []
    signal = [env.event()]

    def worker(name: int):
        for step in range(20):
            choice = rng.random()
            if choice < 0.2:
                yield env.timeout(0)
            elif choice < 0.5:
                yield env.timeout(rng.choice((0.5, 1.0)))
            elif choice < 0.6:
                event, signal[0] = signal[0], env.event()
                event.succeed(name)
            elif choice < 0.7:
                yield env.any_of([signal[0], env.timeout(1.0)])
            else:
                yield env.process(helper(name, step))
            log.append((env.now, name, step))

    def helper(name: int, step: int):
        yield env.timeout(rng.choice((0, 0.5)))
        log.append((env.now, "helper", name, step))

    for name in range(8):
        env.process(worker(name))
    env.run()
    return log


@pytest.mark.parametrize("seed", range(5))
def test_the_same_story_as_simpy(seed):
    assert story(Environment(), seed) == story(simpy.Environment(), seed)


def test_run_until_a_time_stops_before_the_events_at_that_time():
    env = Environment()
    seen = []

    def ticker():
        while True:
            yield env.timeout(1)
            seen.append(env.now)

    env.process(ticker())
    env.run(until=3)
    assert env.now == 3 and seen == [1, 2]
    env.run(until=4.5)
    assert seen == [1, 2, 3, 4]


def test_run_until_an_event_returns_its_value_and_counts_the_events():
    env = Environment()

    def answer():
        yield env.timeout(2)
        return 42

    assert env.run(until=env.process(answer())) == 42
    assert env.now == 2
    assert env.events == 3  # the process starts, its timeout, the process ends


def test_a_failed_event_nobody_handles_ends_the_run():
    env = Environment()

    def broken():
        yield env.timeout(1)
        raise KeyError("lost")

    env.process(broken())
    with pytest.raises(KeyError):
        env.run()
