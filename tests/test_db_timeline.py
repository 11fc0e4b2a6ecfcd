"""Exact timelines of the database blocks with constant delays (no randomness)."""

import random

import pytest

from durosim.sim.db import DbClient, PoolBehaviour, PoolTimedOut, Statement
from durosim.sim.dist import Const
from durosim.sim.kernel import Environment
from durosim.sim.network import Link
from durosim.sim.pool import REFUSED, ConnectionLimit, Pool
from durosim.sim.server import DbServer

R = 0.050  # seconds


def make(size=10, cost=0.0, cores=1, min_connections=1, **behaviour):
    env = Environment()
    behaviour.setdefault("prepare_round_trip", False)
    pool = Pool(env, size, min_connections)
    client = DbClient(
        env,
        Link(Const(R)),
        pool,
        DbServer(cores, {"q": Const(cost)}),
        PoolBehaviour(**behaviour),
    )
    return env, pool, client


def call_and_log(env, client, log, name, statement="q"):
    result, times = yield from client.call(Statement(statement, lambda t: name))
    log.append((name, round(env.now, 9), times))


def test_one_call_returns_after_two_rtt_and_frees_connection_after_three():
    env, pool, client = make()
    log = []
    env.process(call_and_log(env, client, log, "a"))
    env.run(until=2 * R - 1e-9)
    assert log == [] and pool.in_use == 1
    env.run(until=2 * R + 1e-9)
    assert [entry[:2] for entry in log] == [("a", 2 * R)]
    env.run(until=3 * R - 1e-9)
    assert pool.in_use == 1
    env.run(until=3 * R + 1e-9)
    assert pool.in_use == 0


def test_call_times_split_ping_statement_and_commit():
    env, _, client = make(cost=0.002)
    log = []
    env.process(call_and_log(env, client, log, "a"))
    env.run()
    start, acquired, at_server, commit, reply, end = log[0][2]
    assert (start, acquired) == (0.0, 0.0)
    assert at_server == pytest.approx(1.5 * R)
    assert commit == pytest.approx(1.5 * R + 0.002)
    assert reply == end == pytest.approx(2 * R + 0.002)


def test_pool_of_one_serialises_calls_including_the_release_ping():
    env, _, client = make(size=1)
    log = []
    env.process(call_and_log(env, client, log, "a"))
    env.process(call_and_log(env, client, log, "b"))
    env.run()
    # b waits for a's connection, which comes back after a's release ping (3R), then 2R more.
    assert [(name, pytest.approx(t)) for name, t, _ in log] == [("a", 2 * R), ("b", 5 * R)]
    assert log[1][2][1] == pytest.approx(3 * R)  # acquired


def test_pings_switched_off_leave_one_round_trip():
    env, pool, client = make(ping_on_acquire=False, ping_on_release=False)
    log = []
    env.process(call_and_log(env, client, log, "a"))
    env.run(until=R + 1e-9)
    assert [entry[:2] for entry in log] == [("a", pytest.approx(R))]
    assert pool.in_use == 0


def test_new_connection_costs_the_connect_round_trips_and_no_ping():
    env, pool, client = make(min_connections=0, connect_round_trips=3)
    log = []
    env.process(call_and_log(env, client, log, "a"))
    env.run()
    assert log[0][1] == pytest.approx(4 * R)
    assert pool.opened == 1


def test_first_use_of_a_statement_on_a_connection_costs_a_parse_round_trip():
    env, _, client = make(prepare_round_trip=True)
    log = []

    def twice():
        yield from call_and_log(env, client, log, "first")
        yield env.timeout(R)  # let the release ping finish so the same connection comes back
        yield from call_and_log(env, client, log, "second")

    env.process(twice())
    env.run()
    assert log[0][1] == pytest.approx(3 * R)
    assert log[1][1] - log[0][1] == pytest.approx(R + 2 * R)


def test_idle_connections_are_handed_out_longest_idle_first():
    env = Environment()
    pool = Pool(env, 3, min_connections=3)
    first, _ = pool.try_take()
    second, _ = pool.try_take()
    pool.release(second)
    pool.release(first)
    again, fresh = pool.try_take()
    assert (again.number, fresh) == (2, False)  # connection 2 was idle all along
    assert pool.try_take()[0].number == 1


def test_waiters_are_served_first_come_first_served():
    env, _, client = make(size=1, ping_on_release=False)
    log = []
    for name in "abcd":
        env.process(call_and_log(env, client, log, name))
    env.run()
    assert [name for name, _, _ in log] == list("abcd")
    assert [t for _, t, _ in log] == pytest.approx([2 * R, 4 * R, 6 * R, 8 * R])


def test_a_run_to_the_end_ends_with_the_last_release_ping():
    env, pool, client = make()
    env.process(call_and_log(env, client, [], "a"))
    env.run()
    assert env.now == pytest.approx(3 * R) and pool.in_use == 0


@pytest.mark.parametrize("lazy", [True, False])
def test_a_release_at_the_time_a_run_stops_has_not_happened_yet(lazy):
    env = Environment()
    pool = Pool(env, 1, 1)
    connection, _ = pool.try_take()
    if lazy:
        pool.release_later(1.0, connection)
    else:
        env.timeout(1.0).callbacks.append(lambda _event: pool.release(connection))
    env.run(until=1.0)  # stops before the events at 1.0, as SimPy does
    assert pool.in_use == 1
    env.run(until=1.5)
    assert pool.in_use == 0


def release_story(lazy: bool, seed: int, size: int) -> list[tuple]:
    """Three callers on a pool, full of same-time ties, now waiting and now not: each holds its
    connection 0, 0.5 or 1 s and releases it that much later again, by `release_later` or by a
    Timeout's callback; some start a new caller as they release (it starts before the releases
    due at that time, as a new process does)."""
    env = Environment()
    pool = Pool(env, size, 1)
    rng = random.Random(seed)
    log: list[tuple] = []

    def release(connection):
        delay = rng.choice((0.0, 0.5, 1.0))
        if lazy:
            pool.release_later(delay, connection)
        else:
            env.timeout(delay).callbacks.append(lambda _event: pool.release(connection))

    def caller(name: int):
        for _ in range(20):
            connection, fresh = yield from pool.acquire(f"c{name % 2}")
            log.append((env.now, name, connection.number, fresh, pool.in_use))
            yield env.timeout(rng.choice((0.0, 0.5, 1.0)))
            release(connection)
            if name < 10 and rng.random() < 0.1:
                env.process(caller(name + 10))
            yield env.timeout(rng.choice((0.0, 0.5, 1.0, 1.5)))

    for name in range(3):
        env.process(caller(name))
    env.run()
    levels = {caller: level.mean(env.now) for caller, level in pool.queue_by_caller.items()}
    return log + [(env.now, pool.in_use, pool.occupancy.mean(env.now), levels)]


@pytest.mark.parametrize("size", [3, 4])
def test_a_release_without_an_event_happens_as_with_one(size):
    for seed in range(10):
        assert release_story(True, seed, size) == release_story(False, seed, size), seed


def test_the_connection_limit_caps_pools_together():
    env = Environment()
    limit = ConnectionLimit(3)
    a, b = Pool(env, 10, 1, limit), Pool(env, 10, 1, limit)
    assert limit.open == 2
    assert a.try_take()[1] is False  # the idle one
    assert a.try_take()[1] is True  # a new one: the third
    # a's next permit finds no idle connection and the server full: a permit without one
    assert a.try_take() == (REFUSED, True) and a.refused == 1
    assert b.try_take()[1] is False
    assert b.try_take() == (REFUSED, True)


def full_server(acquire_timeout_s=2.0):
    """Pool `a` may not open a connection: pool `b` holds the server's only one."""
    env = Environment()
    limit = ConnectionLimit(1)
    b = Pool(env, 10, 1, limit)
    a = Pool(env, 2, 1, limit)
    client = DbClient(
        env, Link(Const(R)), a, DbServer(1, {"q": Const(0.0)}),
        PoolBehaviour(prepare_round_trip=False, acquire_timeout_s=acquire_timeout_s),
    )  # fmt: skip
    return env, a, b, client


def start_calls(env, client, delays: tuple[float, ...]) -> list[tuple[str, float]]:
    """One call after each delay; the list fills with ("ran" or "timed out", when)."""
    outcomes = []

    def call(delay):
        yield env.timeout(delay)
        try:
            yield from client.call(Statement("q", lambda t: None))
            outcomes.append(("ran", round(env.now, 9)))
        except PoolTimedOut:
            outcomes.append(("timed out", round(env.now, 9)))

    for delay in delays:
        env.process(call(delay))
    return outcomes


def test_a_refused_connection_holds_its_permit_to_the_acquire_deadline_then_times_out():
    env, a, b, client = full_server()
    outcome = start_calls(env, client, (0.0,))
    env.run(until=1.0)
    assert a.in_use == 1 and outcome == []  # sqlx retries the connect, holding the permit
    env.run()
    assert outcome == [("timed out", 2.0)]
    assert a.in_use == 0 and a.opened == 0 and b.opened == 1


def test_a_permit_given_back_goes_to_the_next_waiter_who_is_refused_in_turn():
    env, a, b, client = full_server()
    # a pool of 2: the third waits for a permit
    outcomes = start_calls(env, client, (0.0, 0.1, 0.2))
    env.run()
    # each waits out its own deadline, counted from its own start: the third got its permit
    # at 2.0 and had 0.2 s left
    assert outcomes == [("timed out", 2.0), ("timed out", 2.1), ("timed out", 2.2)]
    assert a.refused == 3 and a.in_use == 0


def test_a_connection_freed_on_the_server_goes_to_the_waiter_given_the_permit():
    env, a, b, client = full_server()
    got = start_calls(env, client, (0.0, 0.1, 0.2))
    env.run(until=1.0)
    a.limit.open -= 1  # another pool closed its connection: one more may open
    env.run()
    # the first refused caller still times out at 2.0 (sqlx's connect loop does not look
    # back), gives its permit to the waiter, which opens the freed connection
    assert got[0] == ("timed out", 2.0) and got[1] == ("timed out", 2.1)
    assert got[2][0] == "ran" and a.opened == 1


def test_server_cores_serve_statements_first_come_first_served():
    server = DbServer(1, {"q": Const(0.010)})
    assert server.admit("q", 0.0) == pytest.approx(0.010)
    assert server.admit("q", 0.0) == pytest.approx(0.020)
    assert server.admit("q", 0.050) == pytest.approx(0.060)
    two = DbServer(2, {"q": Const(0.010)})
    assert [two.admit("q", 0.0) for _ in range(3)] == pytest.approx([0.010, 0.010, 0.020])
    assert server.utilisation(0.060) == pytest.approx(0.5)


def test_unknown_operation_costs_nothing_on_the_server():
    assert DbServer(1, {}).admit("other", 1.0) == 1.0


def test_a_caller_still_waiting_for_a_permit_at_its_acquire_deadline_times_out():
    # sqlx's acquire runs under its timeout from the permit on: a queued caller leaves then
    env, pool, client = make(size=1, cost=5.0, acquire_timeout_s=2.0)
    outcomes = []

    def call(name, delay):
        yield env.timeout(delay)
        try:
            yield from client.call(Statement("q", lambda t: None), caller=name)
            outcomes.append((name, "ran", round(env.now, 9)))
        except PoolTimedOut:
            outcomes.append((name, "timed out", round(env.now, 9)))

    for name, delay in (("a", 0.0), ("b", 0.1), ("c", 3.0), ("d", 4.0)):
        env.process(call(name, delay))
    env.run(until=2.2)
    # b left the queue at its deadline without a permit; a still holds the only one
    assert outcomes == [("b", "timed out", 2.1)]
    assert pool.in_use == 1 and pool.timed_out == 1 and not pool.waiters
    env.run()
    # a frees its connection at 5 s + 3 RTT (its ping on release included): too late for c
    # (deadline 5.0), in time for d (6.0), which gets it though c came first
    assert outcomes == [
        ("b", "timed out", 2.1),
        ("c", "timed out", 5.0),
        ("a", "ran", round(5.0 + 2 * R, 9)),
        ("d", "ran", round(5.0 + 3 * R + 5.0 + 2 * R, 9)),
    ]
    assert pool.timed_out == 2 and pool.in_use == 0
    assert all(level.value == 0 for level in pool.queue_by_caller.values())


def test_opening_a_connection_costs_the_server_its_backend_startup():
    # the startup packet reaches the server after 2.5 RTT; its backend takes `connect` of a
    # core before the answer, which a statement already on the one core delays
    def run(connect_s, busy_first):
        env = Environment()
        server = DbServer(1, {"q": Const(0.0), "long": Const(1.0), "connect": Const(connect_s)})
        pool = Pool(env, 2, 0)
        client = DbClient(
            env, Link(Const(R)), pool, server, PoolBehaviour(prepare_round_trip=False)
        )
        ends = []
        if busy_first:
            server.admit("long", 0.0)  # the core is busy from 0 to 1 s
        env.process(call_and_log(env, client, ends, "a"))
        env.run()
        return ends[0][1], server.busy_s

    assert run(0.0, False) == (pytest.approx(4 * R), 0.0)
    assert run(0.004, False) == (pytest.approx(4 * R + 0.004), pytest.approx(0.004))
    # queued behind the long statement: the startup runs from 1 s
    assert run(0.004, True)[0] == pytest.approx(1.0 + 0.004 + 0.5 * R + R)


def test_each_refused_connect_attempt_costs_the_server_a_backend():
    env = Environment()
    limit = ConnectionLimit(1)
    Pool(env, 10, 1, limit)  # another pool holds the server's only connection
    pool = Pool(env, 2, 1, limit)
    server = DbServer(1, {"q": Const(0.0), "connect_refused": Const(0.003)})
    client = DbClient(
        env, Link(Const(R)), pool, server,
        PoolBehaviour(prepare_round_trip=False, acquire_timeout_s=2.0),
    )  # fmt: skip
    outcome = start_calls(env, client, (0.0,))
    env.run()
    # still a timeout at the deadline, the permit held to the end
    assert outcome == [("timed out", 2.0)] and pool.in_use == 0
    # attempts 3 RTT + 3 ms apart plus sqlx's back-off: 10, 20, 40, ... ms, capped at 0.4 s
    starts, t, backoff = [], 0.0, 0.01
    while t + 2.5 * R < 2.0:
        starts.append(t)
        t += 3 * R + 0.003 + backoff
        backoff = min(2 * backoff, 0.4)
    assert server.statements == len(starts) == 7
    assert server.busy_s == pytest.approx(0.003 * len(starts))
