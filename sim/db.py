"""A database as its client sees it: a statement is a round trip over a link to a server, run on
a pooled connection, with the pool's own round trips around it.

One call, as sqlx 0.8 runs it (and duroxide-pg makes one per provider method):
1. take a pool permit (FIFO); an idle connection is pinged first (`test_before_acquire`, on by
   default: one round trip the caller waits for); a new connection is opened instead
   (`connect_round_trips`: TCP, SSLRequest, startup with trust auth, the startup costing the
   server the backend it forks: `connect`) and not pinged; one the server refuses at
   max_connections is retried until the acquire deadline, each attempt a backend forked and
   refused (`connect_refused`);
2. the first time a statement runs on a connection, Parse/Describe costs one more round trip;
3. the statement: half an RTT out, the server's queue and service (plus any lock wait the
   statement's model reports), half an RTT back; the statement's effect applies at commit;
4. the caller continues after `call_overhead_s` of client-side time;
5. on release sqlx pings the connection again (from a spawned task): the caller does not wait,
   but the connection and its permit stay busy one more round trip.
So at a constant RTT R with zero server cost a call returns after 2R and frees its connection
after 3R. Sources: sqlx-core 0.8.6 `pool/inner.rs` (acquire, check_idle_conn, release),
`pool/connection.rs` (return_to_pool pings); confirmed on the wire in the lab (1.97 lone Sync
messages per statement at RTT 50 ms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import simpy

from durosim.sim.faults import LinkFaults, Outages
from durosim.sim.network import Link
from durosim.sim.pool import REFUSED, TIMED_OUT, Pool
from durosim.sim.server import DbServer


class CallTimes(NamedTuple):
    """One call's timeline, in simulated seconds."""

    start_s: float
    """The caller asks the pool for a connection."""
    acquired_s: float
    """It has one (a permit, and the connection it may first ping or open)."""
    at_server_s: float
    """The statement reaches the server."""
    commit_s: float
    """The statement commits: its effect applies now."""
    reply_s: float
    """The reply reaches the caller."""
    end_s: float
    """The caller goes on, after its client-side time."""


# CallTimes built without NamedTuple's Python-level __new__: one call makes one or two.
_times = tuple.__new__


@dataclass(slots=True)
class Statement:
    """One statement a call runs: its name (the server's cost key unless `begin` says
    otherwise), what happens at its commit, and how it starts at the server.

    `begin(now)` runs when the statement reaches the server and returns the server cost key and
    the earliest time it may finish (a lock wait); `commit(times)` applies the effect at the
    commit, given the call's timeline (its reply and end are already known then), and may return
    `Blocked` to wait on a lock first. `extra_round_trips` are statements run before this one on
    the same connection, one round trip each."""

    name: str
    commit: Callable[[CallTimes], object]
    begin: Callable[[float], tuple[str, float]] | None = None
    extra_round_trips: int = 0
    admitted: Callable[[float], None] | None = None
    """Told when the statement will finish at the server: as soon as it is queued there, or, on
    a server whose cores are shared (its finish depends on what arrives later), when it has
    finished."""


@dataclass(frozen=True, slots=True)
class Blocked:
    """What a statement's commit returns while it waits on a lock held until `until_s`."""

    until_s: float


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What a statement's commit returns when its transaction goes on for `round_trips` more
    statements on the connection before the reply (the effect applied at the first)."""

    round_trips: int
    result: object


@dataclass(frozen=True, slots=True)
class PoolBehaviour:
    ping_on_acquire: bool = True
    ping_on_release: bool = True
    connect_round_trips: int = 3
    prepare_round_trip: bool = True
    acquire_timeout_s: float = 30.0
    """sqlx's acquire deadline (duroxide-pg sets 30 s): a caller still waiting for a permit
    then, or the server refuses a connection until then (holding its permit), gets
    `PoolTimedOut`."""


class PoolTimedOut(Exception):
    """sqlx's `Error::PoolTimedOut` ("pool timed out while waiting for an open connection")."""


class StatementFailed(Exception):
    """The statement was on its way when the server shut down: PostgreSQL 57P01 "terminating
    connection due to administrator command", a database error that duroxide-pg classes as
    permanent (pg-cur `provider.rs` error mapping: only 40P01, 0A000, pool and I/O errors retry)."""


class NodeDown(Exception):
    """The node this client belongs to has crashed: its processes end at their next call."""


# sqlx retries a refused connect from 10 ms, doubling, capped at a fifth of the time left to the
# acquire deadline when it began (sqlx-core 0.8.6 `pool/inner.rs` `connect`).
CONNECT_BACKOFF_S = 0.01
CONNECT_BACKOFF_SHARE = 0.2


def connect_backoffs(time_left_s: float):
    """sqlx's sleeps between refused connects, for a loop begun `time_left_s` before the acquire
    deadline: 10 ms, doubling, capped at a fifth of that time (and never below 10 ms)."""
    backoff = CONNECT_BACKOFF_S
    cap = max(CONNECT_BACKOFF_S, time_left_s * CONNECT_BACKOFF_SHARE)
    while True:
        yield backoff
        backoff = min(backoff * 2.0, cap)


CONNECT_COSTS = ("connect", "connect_refused")
"""The server's cost keys of a connection: one opened (the postmaster forks a backend, which
authenticates and initialises), and one refused at max_connections (the forked backend starts,
finds no slot and exits with 53300)."""


class DbClient:
    def __init__(
        self,
        env: simpy.Environment,
        link: Link,
        pool: Pool,
        server: DbServer,
        behaviour: PoolBehaviour = PoolBehaviour(),
        call_overhead_s: float = 0.0,
        outages: Outages | None = None,
        link_faults: LinkFaults | None = None,
        may_crash: bool = False,
    ):
        self.env = env
        self.link = link
        self.pool = pool
        self.server = server
        self.behaviour = behaviour
        self.call_overhead_s = call_overhead_s
        # the connection of the call that returned last, and when it goes back to the pool
        self.last_connection = -1
        self.last_released_s = 0.0
        self.outages = outages
        self.link_faults = link_faults
        self.faulted = outages is not None or link_faults is not None or may_crash
        self.dead = False
        """The node crashed: every call from now on raises NodeDown."""
        self.connect_costs = any(
            key in server.cost and server.cost[key].mean > 0 for key in CONNECT_COSTS
        )
        """Opening a connection (or being refused one) costs the server's CPU: a connect's
        startup packet is served there (`_connect`, `_refused_until`)."""
        self.may_crash = may_crash
        """The node crashes in this run: a call checks, as its statement leaves, that the node
        is still there (a statement already sent runs and commits; one not yet sent is lost)."""

    def call(self, statement: Statement, caller: str = ""):
        """Generator: run one statement; return (its commit's result, the call's CallTimes).
        `caller` names the kind of caller, for the pool's waiting time by caller."""
        results = yield from self.call_many((statement,), caller)
        return results[0]

    def call_many(self, statements: Sequence[Statement], caller: str = ""):
        """Generator: several statements pipelined on one connection, in one round trip: each
        runs at the server when the one before it commits, and one reply brings all results.
        Returns [(result, CallTimes)] in order; the times share start, acquisition and reply."""
        if self.dead:
            raise NodeDown()
        env = self.env
        pool = self.pool
        behaviour = self.behaviour
        rtt = self.link.rtt
        # `env._now`, not `env.now`: the attribute SimPy's `now` property returns, read without
        # a Python call each time (about 3 million reads in one replication of production)
        start = env._now
        taken = pool.try_take()
        if taken is None:
            connection, fresh = yield from pool.acquire(caller, behaviour.acquire_timeout_s)
            if connection is TIMED_OUT:
                raise PoolTimedOut()  # no permit by the acquire deadline: none is held
        else:
            connection, fresh = taken
        acquired = env._now
        if connection is REFUSED:
            # sqlx retries the refused connect until the acquire deadline, holding the permit
            deadline = start + behaviour.acquire_timeout_s
            if self.connect_costs and not self.faulted:
                yield from self._refused_until(deadline)
            if deadline > env._now:
                yield env.timeout(deadline - env._now)
            pool.give_back()
            raise PoolTimedOut()
        if self.faulted:
            cross = self._cross
            back = yield from self._reach_faulted(statements, connection, fresh, start)
        else:
            cross = None
            before = 0.0
            if fresh:
                if self.connect_costs:
                    yield from self._connect()
                else:
                    before += behaviour.connect_round_trips * rtt()
            elif behaviour.ping_on_acquire:
                before += rtt()
            prepared = connection.prepared
            for statement in statements:
                name = statement.name
                if name not in prepared and behaviour.prepare_round_trip:
                    prepared.add(name)
                    before += rtt()
                if statement.extra_round_trips:
                    for _ in range(statement.extra_round_trips):
                        before += rtt()
            exchange = rtt()
            yield env.timeout(before + exchange / 2.0)
            back = exchange / 2.0
        at_server = env._now
        overhead = self.call_overhead_s
        server = self.server
        results = []
        for statement in statements:
            arrived = env._now
            commit = statement.commit
            if statement.begin is None:
                cost_key, not_before = statement.name, arrived
            else:
                cost_key, not_before = statement.begin(arrived)
            if server.shared:
                # its work, sharing the cores (its end is known only when it comes)
                done = server.submit(cost_key)
                if done is not None:
                    yield done
                finish = env._now
            else:
                finish = server.admit(cost_key, arrived)
            if not_before > finish:
                finish = not_before  # a lock its model reports is granted later still
            if statement.admitted is not None:
                statement.admitted(finish)
            if finish > env._now:
                yield env.timeout(finish - env._now)
            reply = finish + back if cross is None else cross(finish, back)
            result = commit(
                _times(CallTimes, (start, acquired, at_server, finish, reply, reply + overhead))
            )
            while isinstance(result, Blocked):
                yield env.timeout(result.until_s - env._now)
                finish = env._now
                reply = finish + back if cross is None else cross(finish, back)
                result = commit(
                    _times(CallTimes, (start, acquired, at_server, finish, reply, reply + overhead))
                )
            if isinstance(result, FollowUp):
                if result.round_trips > 0:
                    if cross is None:
                        yield env.timeout(sum(rtt() for _ in range(result.round_trips)))
                    else:
                        done = env._now
                        for _ in range(result.round_trips):
                            done = self._round_trip(done)
                        yield env.timeout(done - env._now)
                result = result.result
            results.append((result, finish))
        finish = env._now
        if cross is not None:
            back = cross(finish, back) - finish  # the reply may be held on the link
        hold = back + rtt() if behaviour.ping_on_release else back
        pool.release_later(hold, connection)
        yield env.timeout(back + overhead)
        end = env._now
        self.last_connection = connection.number
        self.last_released_s = finish + hold
        return [
            (result, _times(CallTimes, (start, acquired, at_server, committed, finish + back, end)))
            for result, committed in results
        ]

    def _serve(self, cost_key: str):
        """Generator: `cost_key`'s work at the server, from now (a core's time, queued as a
        statement's is)."""
        env = self.env
        server = self.server
        if server.shared:
            done = server.submit(cost_key)
            if done is not None:
                yield done
            return
        finish = server.admit(cost_key, env._now)
        if finish > env._now:
            yield env.timeout(finish - env._now)

    def _connect(self):
        """Generator: open a connection on a server that charges for it: the TCP handshake and
        the SSLRequest, then the startup packet, on which the backend the postmaster forked
        authenticates and initialises (`connect`, a core's time), then its answer. One RTT draw
        for all, as without the charge."""
        env = self.env
        rtt = self.link.rtt()
        half = rtt / 2.0
        yield env.timeout((self.behaviour.connect_round_trips - 1) * rtt + half)
        yield from self._serve("connect")
        yield env.timeout(half)

    def _refused_until(self, deadline: float):
        """Generator: sqlx's connect loop against a server at max_connections, until the
        acquire deadline: each attempt's startup packet costs the server a backend that starts
        and is refused (`connect_refused`), its FATAL comes back, and sqlx sleeps from 10 ms,
        doubling, capped at a fifth of the time left when the loop began (sqlx-core 0.8.6
        `pool/inner.rs` `connect`). Returns at the deadline, or before it when no further
        attempt fits."""
        env = self.env
        trips = self.behaviour.connect_round_trips
        backoffs = connect_backoffs(deadline - env._now)
        while True:
            rtt = self.link.rtt()
            arrive = env._now + (trips - 1) * rtt + rtt / 2.0
            if arrive >= deadline:
                return
            yield env.timeout(arrive - env._now)
            yield from self._serve("connect_refused")
            retry = env._now + rtt / 2.0 + next(backoffs)
            if retry >= deadline:
                return
            yield env.timeout(retry - env._now)

    def _cross(self, t: float, one_way: float) -> float:
        """When a message sent at `t` arrives, `one_way` later but for the link's faults."""
        faults = self.link_faults
        return t + one_way if faults is None else faults.cross(t, one_way)

    def _round_trip(self, t: float) -> float:
        half = self.link.rtt() / 2.0
        return self._cross(self._cross(t, half), half)

    def _reach_faulted(
        self, statements: Sequence[Statement], connection, fresh: bool, start: float
    ):
        """Generator: take the statements to the server in a run with faults; return the time
        half a round trip takes. Each message crosses the link on its own (held, slowed or lost
        in a link's fault window); a connection from before an outage is broken (its ping fails
        and sqlx opens a new one); a connect to a server that is down is refused and retried
        until the acquire deadline (PoolTimedOut), or, behind a proxy, fails at once; a
        statement that reaches a server that is down fails (StatementFailed); on a node that
        crashes, a statement not yet sent when it does is lost (NodeDown)."""
        env = self.env
        pool = self.pool
        behaviour = self.behaviour
        rtt = self.link.rtt
        outages = self.outages
        cross = self._cross
        round_trip = self._round_trip
        deadline = start + behaviour.acquire_timeout_s
        t = env._now
        epoch = outages.epoch(t) if outages is not None else 0
        if not fresh and connection.epoch != epoch:
            if behaviour.ping_on_acquire:
                t = round_trip(t)  # the ping finds the connection closed
            fresh = True
            connection.prepared.clear()
        if fresh:
            backoffs = connect_backoffs(deadline - t)
            while outages is not None and outages.down_until(cross(t, rtt() / 2.0)) is not None:
                if not outages.refused(t):  # closed by what stands in front: no retry
                    yield env.timeout(max(0.0, round_trip(t) - env._now))
                    pool.release(connection)
                    raise StatementFailed()
                t = round_trip(t) + next(backoffs)  # refused; sqlx sleeps and tries again
                if t >= deadline:
                    yield env.timeout(max(0.0, deadline - env._now))
                    pool.release(connection)
                    raise PoolTimedOut()
            if self.connect_costs:
                # the startup packet is served at the server before its answer leaves
                for _ in range(behaviour.connect_round_trips - 1):
                    t = round_trip(t)
                half = rtt() / 2.0
                yield env.timeout(max(0.0, cross(t, half) - env._now))
                yield from self._serve("connect")
                t = cross(env._now, half)
            else:
                for _ in range(behaviour.connect_round_trips):
                    t = round_trip(t)
            connection.epoch = outages.epoch(t) if outages is not None else 0
        elif behaviour.ping_on_acquire:
            t = round_trip(t)
        prepared = connection.prepared
        for statement in statements:
            if statement.name not in prepared and behaviour.prepare_round_trip:
                prepared.add(statement.name)
                t = round_trip(t)
            for _ in range(statement.extra_round_trips):
                t = round_trip(t)
        half = rtt() / 2.0
        if self.may_crash:
            yield env.timeout(t - env._now)
            if self.dead:
                pool.release(connection)
                raise NodeDown()
        at_server = cross(t, half)
        yield env.timeout(at_server - env._now)
        if outages is not None and (
            outages.down_until(at_server) is not None
            or outages.epoch(at_server) != connection.epoch
        ):
            yield env.timeout(cross(at_server, half) - env._now)
            pool.release(connection)  # broken: the next caller's ping finds it so
            raise StatementFailed()
        return half
