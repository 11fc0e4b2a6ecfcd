"""What the database server spent during a recording: its CPU time, from /proc (a server on this
machine), and each stored procedure's calls and execution time, from `pg_stat_statements` (the
throwaway cluster loads it; a user's database may have it).

The header of the trace carries it beside the conditions:

    "server": {"window_s": 41.2, "cpu_s": 17.9, "cpu_busy": 0.434, "cores": 1,
               "statements": {"fetch_orchestration_item": {"calls": 4120, "mean_ms": 0.21,
                              "stddev_ms": 0.08}, ...}}

`cpu_busy` is CPU seconds over window × cores: every backend, the postmaster and its background
workers, for whatever they did (statements, sqlx's pings, connection set-up, autovacuum).
`mean_ms` is pg_stat_statements' mean execution time of the call: CPU plus any wait for a lock,
for I/O or, on a saturated server, for a core. `host_cpu_busy` is everything else on this machine
(the runtime nodes, the client, the proxy) over the window and the CPUs left to it: a run where it
nears 1 measured the runtime's host, not the database.

With `waits`, a thread samples `pg_stat_activity` every `WAIT_SAMPLE_S` on a connection of its
own and the header says where the active backends were, on average, by procedure and wait event:

    "waits": {"samples": 2480, "interval_ms": 10, "backends": {"fetch_orchestration_item":
              {"Lock:advisory": 9.77, "CPU": 0.42, "IO:WALSync": 0.17}, ...}}

"CPU" is an active backend with no wait event: running, or runnable and waiting for a core. A
backend that slept on I/O or a lock shows that wait until it runs again, so on a saturated server
those waits include the time it waited for a core after its I/O or lock was done. The sampling
query costs the server a little CPU of its own (about 0.2 ms a sample).

A server stopped and started again mid-run (`record --fault database@...`) does not end the watch:
its connections are opened again when next needed, the sampler skips the samples it cannot take,
and the CPU is summed over the server's two lives (the postmaster's process id changes), the fault
telling it when (`server_stopping`, `server_started`). pg_stat_statements keeps its counts over a
clean shutdown (`pg_stat_statements.save`, on by default: PostgreSQL 15 docs, F.32).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

from durosim.evidence.ingest import procedure_of
from durosim.lab.cluster import server_cpu_s, server_pid

STATS_QUERY = (
    "select query, calls, total_exec_time, stddev_exec_time from pg_stat_statements "
    "where dbid = (select oid from pg_database where datname = current_database())"
)
WAIT_SAMPLE_S = 0.01
WAITS_QUERY = (
    "select query, wait_event_type, wait_event from pg_stat_activity "
    "where backend_type = 'client backend' and state = 'active' and pid <> pg_backend_pid()"
)


class ServerWatch:
    """Open before the runtime (a full server would refuse a connection later), `start` before
    the workload, `stop` after: the server's CPU and statement costs between; `close` at the
    end. Keeps one connection of its own for the whole run."""

    def __init__(self, dsn: str, cores: int | None, waits: bool = False):
        import psycopg

        self.dsn = dsn
        self.cores = cores or os.cpu_count() or 1
        self.conn = None
        self.pid = None
        self.waits: WaitSampler | None = None
        try:
            self.conn = _connect(dsn)
            if waits:
                self.waits = WaitSampler(_connect(dsn), dsn)
        except psycopg.Error:
            pass
        else:
            self.pid = server_pid(self.conn)
        self.statements = False
        self.cpu0: float | None = None
        # CPU seconds of the server's earlier lives (before a restart) within the window
        self.cpu_before = 0.0
        self.machine0: float | None = None
        self.host_cpus = 1
        self.t0 = time.monotonic()

    def start(self) -> None:
        self.statements = self._query("select pg_stat_statements_reset()") is not None
        self.host_cpus = len(os.sched_getaffinity(0))
        self.cpu0 = self._cpu()
        self.machine0 = machine_cpu_s()
        self.t0 = time.monotonic()
        if self.waits is not None:
            self.waits.start()

    def server_stopping(self) -> None:
        """The server is about to stop: keep the CPU its postmaster's life spent."""
        cpu = self._cpu()
        if self.cpu0 is not None and cpu is not None:
            self.cpu_before += cpu - self.cpu0
            self.cpu0 = 0.0
        else:
            self.cpu0 = None

    def server_started(self) -> None:
        """The server runs again under a new postmaster: count its CPU from here."""
        self._reconnect()
        self.pid = None if self.conn is None else server_pid(self.conn)
        if self.cpu0 is not None:
            self.cpu0 = self._cpu()

    def close(self) -> None:
        if self.waits is not None:
            self.waits.close()
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _cpu(self) -> float | None:
        return None if self.pid is None else server_cpu_s(self.pid)

    def _query(self, sql: str) -> list | None:
        """The rows, or None; a connection the server dropped (a restart) is opened again
        once."""
        import psycopg

        for attempt in range(2):
            if self.conn is None or self.conn.closed or self.conn.broken:
                if attempt == 0 and self.conn is not None:
                    self._reconnect()
                    continue
                return None
            try:
                return self.conn.execute(sql).fetchall()
            except psycopg.OperationalError:
                if attempt == 0:
                    self._reconnect()
            except psycopg.Error:
                return None
        return None

    def _reconnect(self) -> None:
        import psycopg

        if self.conn is not None:
            self.conn.close()
        try:
            self.conn = _connect(self.dsn)
        except psycopg.Error:
            self.conn = None

    def stop(self) -> dict:
        """The header's `server` object (keys it could not measure are left out)."""
        window = time.monotonic() - self.t0
        waits = self.waits.stop() if self.waits is not None else None
        cpu1 = self._cpu()
        machine1 = machine_cpu_s()
        out: dict = {"window_s": round(window, 3), "cores": self.cores}
        if self.cpu0 is not None and cpu1 is not None and window > 0:
            cpu_s = self.cpu_before + cpu1 - self.cpu0
            out["cpu_s"] = round(cpu_s, 3)
            out["cpu_busy"] = round(cpu_s / (window * self.cores), 4)
            if self.machine0 is not None and machine1 is not None:
                rest = (machine1 - self.machine0) - cpu_s
                out["host_cpu_busy"] = round(max(rest, 0.0) / (window * self.host_cpus), 4)
        rows = self._query(STATS_QUERY) if self.statements else None
        if rows is not None:
            out["statements"] = statement_costs(rows)
        if waits is not None:
            out["waits"] = waits
        return out


def _connect(dsn: str):
    import psycopg

    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


class WaitSampler:
    """Samples the active backends' procedure and wait event from a thread until `stop`; a
    sample it cannot take (the server down) is skipped, and it connects again."""

    def __init__(self, conn, dsn: str):
        self.conn = conn
        self.dsn = dsn
        self.counts: Counter[tuple[str, str]] = Counter()
        self.samples = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="durosim-waits", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        while not self._done.wait(WAIT_SAMPLE_S):
            try:
                rows = self.conn.execute(WAITS_QUERY).fetchall()
            except psycopg.Error:
                if not self._reconnect():
                    return
                continue
            self.samples += 1
            for query, kind, event in rows:
                op = procedure_of(query or "")
                if op is not None:
                    self.counts[(op, f"{kind}:{event}" if kind else "CPU")] += 1

    def _reconnect(self) -> bool:
        """Connect again, trying every half second until done; False once done."""
        import psycopg

        self.conn.close()
        while not self._done.wait(0.5):
            try:
                self.conn = _connect(self.dsn)
                return True
            except psycopg.Error:
                continue
        return False

    def stop(self) -> dict:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        return wait_summary(self.counts, self.samples)

    def close(self) -> None:
        self.stop()
        self.conn.close()


def wait_summary(counts: Counter, samples: int) -> dict:
    """Sample counts by (procedure, wait) -> the header's `waits`: average active backends."""
    backends: dict[str, dict[str, float]] = {}
    for (op, wait), count in sorted(counts.items(), key=lambda item: -item[1]):
        mean = round(count / samples, 3) if samples else 0.0
        if mean >= 0.001:
            backends.setdefault(op, {})[wait] = mean
    return {
        "samples": samples,
        "interval_ms": round(WAIT_SAMPLE_S * 1000),
        "backends": dict(sorted(backends.items())),
    }


def machine_cpu_s() -> float | None:
    """CPU seconds every CPU of this machine has been busy (user, nice, system, irq, softirq,
    steal), from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def statement_costs(rows: list) -> dict:
    """pg_stat_statements rows (query, calls, total ms, stddev ms) -> the provider's procedures'
    calls and mean execution time; several texts of one procedure are pooled."""
    totals: dict[str, list[float]] = {}
    for query, calls, total_ms, stddev_ms in rows:
        op = procedure_of(query or "")
        if op is None or not calls:
            continue
        entry = totals.setdefault(op, [0, 0.0, 0.0])
        entry[0] += calls
        entry[1] += total_ms
        entry[2] += (stddev_ms or 0.0) ** 2 * calls
    return {
        op: {
            "calls": int(calls),
            "mean_ms": round(total / calls, 4),
            "stddev_ms": round((squares / calls) ** 0.5, 4),
        }
        for op, (calls, total, squares) in sorted(totals.items())
    }
