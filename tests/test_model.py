"""The duroxide model: exact client timelines, invariants over many small scenarios, seeds."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durosim.model.client import Client
from durosim.model.profiles import PROFILES
from durosim.model.program import Program
from durosim.model.provider import PostgresProvider
from durosim.model.queues import CallLog, Instance
from durosim.model.scenario import load_table
from durosim.model.workflows import Step, Workflow
from durosim.model.world import simulate
from durosim.sim.db import DbClient, PoolBehaviour
from durosim.sim.dist import Const
from durosim.sim.kernel import Environment
from durosim.sim.network import Link
from durosim.sim.pool import Pool
from durosim.sim.server import DbServer

R = 0.040


ONE_ACTIVITY = Program(
    Workflow("one", (Step("activity", duration=Const(0.0)),), 1.0), lambda dist, name: lambda: 0.0
)


def bare_client(runtime: str):
    env = Environment()
    db = DbClient(
        env,
        Link(Const(R)),
        Pool(env, 10, 10),
        DbServer(1, {}),
        PoolBehaviour(prepare_round_trip=False),
    )
    provider = PostgresProvider(env, db, CallLog(), "skip", 1.0, 0.0)
    profile = PROFILES[runtime]
    return env, provider, Client(env, provider, profile.client_check, 0.005, 0.1)


@pytest.mark.parametrize("runtime, round_trips", [("duroxide-0.2", 4), ("duroxide-2025-11", 2)])
def test_a_client_check_costs_two_rtt_per_call(runtime, round_trips):
    env, _, client = bare_client(runtime)
    instance = Instance("i-1", 1, 0.0, True, ONE_ACTIVITY)
    done = []

    def check():
        path = yield from client.check(instance)
        done.append((env.now, path))

    env.process(check())
    env.run()
    assert done == [(pytest.approx(round_trips * R), None)]


def test_start_is_one_call_and_the_wait_backs_off_5_10_20_ms_after_two_checks():
    env, provider, client = bare_client("duroxide-2025-11")
    instance = Instance("i-1", 1, 0.0, True, ONE_ACTIVITY)
    checks = []
    original = provider.fetch_history

    def logged(inst, actor):
        checks.append(round(env.now, 9))
        return original(inst, actor)

    provider.fetch_history = logged

    def go():
        yield from client.start(instance)
        assert env.now == pytest.approx(2 * R)
        yield from client.wait(instance, 0.5)

    env.process(go())
    env.run(until=0.7)
    gaps = [round(b - a - 2 * R, 6) for a, b in zip(checks, checks[1:])]
    assert gaps[:5] == pytest.approx([0.0, 0.005, 0.010, 0.020, 0.040])
    assert len(provider.orchestrator_queue.waiting) == 1  # the start message waits, untaken


def small_scenario(rtt_ms, fanout, o, w, pool, mode, in_flight, runtime, activity_ms, poll_ms):
    return load_table(
        {},
        [
            f"network.rtt_ms={rtt_ms}",
            f"workload.fanout={fanout}",
            f"runtime_options.orchestration_concurrency={o}",
            f"runtime_options.worker_concurrency={w}",
            f"runtime_options.dispatcher_poll_interval_ms={poll_ms}",
            f"pool.size={pool}",
            f'workload.mode="{mode}"',
            f"workload.in_flight={in_flight}",
            f'runtime="{runtime}"',
            f"workload.activity_ms={activity_ms}",
            "workload.count=6",
            "workload.warmup=1",
        ],
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rtt_ms=st.sampled_from([0.2, 5.0, 30.0, 120.0]),
    fanout=st.integers(1, 8),
    o=st.integers(1, 4),
    w=st.integers(1, 4),
    pool=st.integers(1, 10),
    mode=st.sampled_from(["sequential", "closed"]),
    in_flight=st.integers(1, 6),
    runtime=st.sampled_from(["duroxide-0.2", "duroxide-2025-11"]),
    activity_ms=st.sampled_from([0, 10, 200]),
    poll_ms=st.sampled_from([10, 100]),
)
def test_invariants(rtt_ms, fanout, o, w, pool, mode, in_flight, runtime, activity_ms, poll_ms):
    s = small_scenario(rtt_ms, fanout, o, w, pool, mode, in_flight, runtime, activity_ms, poll_ms)
    r = simulate(s, 0)
    assert r.completed + r.failed == 7
    if r.failed:
        # a starved pool can make waits time out (60 s), as in the real stress test
        assert pool < in_flight + o + w
        return
    assert r.measured == 6
    # the critical path's parts add up to the latency, and none is negative
    assert sum(r.breakdown_s.values()) == pytest.approx(sum(r.latencies_s) / 6, rel=1e-9)
    assert min(r.breakdown_s.values()) >= -1e-12
    assert r.breakdown_s["activity"] >= activity_ms / 1000.0 - 1e-12
    # a start and a check: at least 2 + 2 x (calls per check) round trips
    floor = (2 + 2 * len(s.profile.client_check)) * rtt_ms / 1000.0
    assert min(r.latencies_s) >= floor
    # every activity is fetched, read and acked exactly once; every turn is fetched and acked
    per = r.calls_per_orchestration
    assert per["fetch_work_item"] == per["ack_work_item"] == fanout
    assert per["enqueue_orchestrator_work"] == 1
    assert (
        per["fetch_orchestration_item"]
        == per["ack_orchestration_item"]
        == pytest.approx(r.turns_per_orchestration)
    )
    assert 2 - 1e-9 <= r.turns_per_orchestration <= fanout + 1 + 1e-9
    assert 0.0 <= r.pool_in_use_mean <= pool + 1e-9
    assert 0.0 <= r.server_utilisation <= 1.0
    assert r.throughput_per_s > 0


def test_same_seed_same_result_other_replication_other_result():
    s = load_table({}, ["network.rtt_ms=20", "workload.count=10"])
    a, b, c = simulate(s, 0), simulate(s, 0), simulate(s, 1)
    assert a.latencies_s == b.latencies_s and a.calls == b.calls
    assert a.latencies_s != c.latencies_s


def test_a_different_seed_gives_a_different_result():
    s = load_table({}, ["network.rtt_ms=20", "workload.count=10"])
    t = load_table({}, ["network.rtt_ms=20", "workload.count=10", "seed=2"])
    assert simulate(s, 0).latencies_s != simulate(t, 0).latencies_s


def test_stress_mode_runs_the_pump_then_drains():
    s = load_table(
        {},
        [
            'runtime="duroxide-2025-11"',
            'workload.mode="stress"',
            "workload.in_flight=5",
            "workload.duration_s=2",
            "workload.activity_ms=10",
            "network.rtt_ms=5",
        ],
    )
    r = simulate(s, 0)
    assert r.total_s >= 2.0
    assert r.throughput_per_s == pytest.approx(r.completed / r.total_s)
    assert r.completed >= 5
    # the drain checks every 100 ms after the 2 s pump
    assert math.isclose((r.total_s - 2.0) / 0.1, round((r.total_s - 2.0) / 0.1), abs_tol=0.05)


def test_a_short_wait_timeout_fails_the_orchestration():
    s = load_table({}, ["network.rtt_ms=50", "workload.wait_timeout_ms=100", "workload.count=2"])
    r = simulate(s, 0)
    assert r.failed == 5 and r.completed == 0 and r.measured == 0


def test_one_orchestration_has_the_critical_path_written_down():
    """RTT 10 ms, no server cost, poll interval 1 s, 1:1 slots, fan-out 1, one orchestration.

    Every call is ping (10) + statement out (5) to its commit + 5 back = 20 ms. All loops start
    at 0; the dispatchers' empty fetches commit at 15 just before the start message does, so
    they sleep until 1000. Then: orchestration fetch commits at 1015, ack at 1035 (work item
    queued); the worker, asleep until 2000, fetches at 2015, reads the history 2020-2040, acks at
    2055 (completion queued); the orchestration slot, asleep until 3040 after an empty fetch at
    2040, fetches at 3055 and acks at 3075 (completed). The client, checking at 20, 60, then
    every 5, 10, ... 100 ms plus 40 ms a check, starts a check at exactly 3075, whose read
    commits at 3090 and sees it; its second call ends at 3115.
    """
    costs = [f"database.cost.{op}=0" for op in (
        "fetch_orchestration_item", "ack_orchestration_item", "fetch_work_item", "ack_work_item",
        "enqueue_orchestrator_work", "fetch_history", "get_custom_status",
        "fetch_orchestration_item_empty", "fetch_work_item_empty")]  # fmt: skip
    s = load_table(
        {},
        ["network.rtt_ms=10", "runtime_options.dispatcher_poll_interval_ms=1000",
         "runtime_options.orchestration_concurrency=1", "runtime_options.worker_concurrency=1",
         "workload.fanout=1", "pool.min_connections=10", "pool.prepare_round_trip=false",
         "host.call_overhead_ms=0", "workload.warmup=0", "workload.count=1", *costs],
    )  # fmt: skip
    r = simulate(s, 0)
    assert list(r.latencies_s) == [pytest.approx(3.115)]
    assert r.breakdown_s["network"] == pytest.approx(0.180)  # 13 legs of the path
    assert r.breakdown_s["poll_wait"] == pytest.approx(0.985 + 0.965 + 0.985)
    assert r.breakdown_s["client_backoff"] == pytest.approx(0.0)


def advisory_provider(cores: int, instances: tuple[str, ...]):
    """duroxide-0.2's provider (fetches take the instance's advisory lock) on a server of
    `cores` where a claiming fetch costs 4 ms and an empty one 1 ms, with a start message queued
    for each of `instances`, oldest first: (env, provider)."""
    env = Environment()
    costs = {"fetch_orchestration_item": 0.004, "fetch_orchestration_item_empty": 0.001}
    server = DbServer(cores, {op: Const(cost) for op, cost in costs.items()})
    db = DbClient(
        env, Link(Const(R)), Pool(env, 10, 10), server, PoolBehaviour(prepare_round_trip=False)
    )
    provider = PostgresProvider(env, db, CallLog(), "advisory", 1.0, 0.0)
    for number, name in enumerate(instances, start=1):
        instance = Instance(name, number, 0.0, True, ONE_ACTIVITY)
        provider.orchestrator_queue.put(instance, "start", 0.0, {}, None)
    return env, provider


def two_fetches(second_delay_s: float) -> dict:
    """Two orchestration fetches of duroxide-0.2 from two slots, the second `second_delay_s`
    later, after one instance's start message: per slot, (found it, its CallTimes)."""
    env, provider = advisory_provider(1, ("i-1",))
    got = {}

    def fetch(slot, delay):
        yield env.timeout(delay)
        (item, times) = yield from provider.run(provider.fetch_orchestration_item(slot))
        got[slot] = (item is not None, times)

    env.process(fetch("orch-0", 0.0))
    env.process(fetch("orch-1", second_delay_s))
    env.run()
    return got


def test_a_second_fetch_of_one_instance_waits_for_the_first_to_commit_then_finds_nothing():
    # duroxide-0.2's fetch: both find the instance's message, the second queues on the
    # instance's advisory lock until the first's transaction ends, re-checks and moves on
    got = two_fetches(0.0005)
    first_commit = got["orch-0"][1].commit_s
    assert got["orch-0"][0] and not got["orch-1"][0]
    # ping and half the exchange (1.5 R) to the server, the fetch's 4 ms; the second waits
    # for that commit, then holds the lock for its own re-check (1 ms)
    assert first_commit == pytest.approx(1.5 * R + 0.004)
    assert got["orch-1"][1].commit_s == pytest.approx(first_commit + 0.001)


def test_a_fetch_arriving_after_the_commit_skips_the_locked_instance_at_once():
    got = two_fetches(0.010)
    at_server = {slot: round(t.commit_s - t.at_server_s, 6) for slot, (_, t) in got.items()}
    assert (got["orch-0"][0], got["orch-1"][0]) == (True, False)
    assert at_server == {"orch-0": 0.004, "orch-1": 0.001}


def test_a_fetch_that_waited_for_a_claimed_instance_keeps_its_lock_until_it_commits():
    # duroxide-0.2's fetch loops within one transaction: the second fetch waits for A's
    # advisory lock, finds A claimed, claims B, and still holds A's lock (a transaction's)
    # until it commits; so the third, queued on A behind it, passes only after that commit
    # and not after the second's re-check
    env, provider = advisory_provider(4, ("A", "B"))
    got = {}

    def fetch(slot, delay):
        yield env.timeout(delay)
        (item, times) = yield from provider.run(provider.fetch_orchestration_item(slot))
        got[slot] = (None if item is None else item[0].name, times.commit_s)

    for slot, delay in (("orch-0", 0.0), ("orch-1", 0.0005), ("orch-2", 0.001)):
        env.process(fetch(slot, delay))
    env.run()
    first = 1.5 * R + 0.004  # A claimed and committed
    second = first + 0.001 + 0.004  # waited for A, re-checked, then B's claim
    assert got["orch-0"] == ("A", pytest.approx(first))
    assert got["orch-1"] == ("B", pytest.approx(second))
    # waited for A until the second's commit, re-checked, found nothing unclaimed
    assert got["orch-2"] == (None, pytest.approx(second + 0.001))
