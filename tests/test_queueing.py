"""The blocks against queueing theory.

Tolerances: each check averages 3 seeds of about 60,000 customers; the standard error of the
mean wait is then about 1-2%, so 5% holds with a wide margin and still catches a wrong rule
(LIFO instead of FIFO leaves the mean alone but a missing queue or a wrong core count does not).
"""

import math

import numpy as np
import pytest

from durosim.sim.dist import Exponential, LogNormal, Normal, Uniform
from durosim.sim.kernel import Environment
from durosim.sim.pool import Pool
from durosim.sim.rng import Streams
from durosim.sim.server import DbServer
from durosim.sim.stats import mean


def erlang_c_wait(c: int, lam: float, mu: float) -> float:
    """Mean wait in queue of M/M/c."""
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def test_single_core_server_is_mm1():
    lam, mu = 80.0, 100.0
    waits = []
    for seed in range(3):
        rng = Streams(seed)["arrivals"]
        server = DbServer(1, {"q": Exponential(1.0 / mu)}, Streams(seed)["service"])
        t = 0.0
        for _ in range(60_000):
            t += rng.exponential(1.0 / lam)
            waits.append(server.admit("q", t) - t)
    assert mean(waits) == pytest.approx(1.0 / (mu - lam), rel=0.05)


def pool_waits(c: int, lam: float, mu: float, seed: int) -> list[float]:
    env = Environment()
    pool = Pool(env, c, min_connections=c)
    streams = Streams(seed)
    arrivals, service = streams["arrivals"], streams["service"]
    waits: list[float] = []

    def customer():
        asked = env.now
        connection, _ = yield from pool.acquire()
        waits.append(env.now - asked)
        yield env.timeout(service.exponential(1.0 / mu))
        pool.release(connection)

    def source():
        for _ in range(60_000):
            yield env.timeout(arrivals.exponential(1.0 / lam))
            env.process(customer())

    env.process(source())
    env.run()
    assert pool.occupancy.peak <= c
    return waits


def test_pool_is_mmc():
    c, lam, mu = 4, 3.2, 1.0
    waits = [w for seed in range(3) for w in pool_waits(c, lam, mu, seed)]
    assert mean(waits) == pytest.approx(erlang_c_wait(c, lam, mu), rel=0.05)


@pytest.mark.parametrize(
    "dist",
    [Exponential(0.01), Uniform(0.005, 0.015), Normal(0.05, 0.002), LogNormal(0.001, 0.004)],
)
def test_distributions_sample_their_analytic_mean(dist):
    sample = dist.sampler(np.random.default_rng(7))
    values = [sample() for _ in range(100_000)]
    assert mean(values) == pytest.approx(dist.mean, rel=0.01)
    assert min(values) >= 0.0
