"""What a connection costs PostgreSQL's CPU: one opened, and one refused at max_connections.

    python -m durosim.lab.connect_cost [N]

On a throwaway cluster (`durosim.lab.cluster`) pinned to the first CPU, with this process on the
others, the server's CPU time (postmaster, backends living and reaped, from /proc) is read
around three loops of N each:

1. `select 1` on one open connection: the statement alone;
2. connect, `select 1`, close: the postmaster forks a backend, which authenticates (trust),
   initialises, runs the statement and exits;
3. connect as a role without superuser while every ordinary slot is taken: the forked backend
   starts, finds no slot and exits with 53300 ("remaining connection slots are reserved").

A connection opened costs (2 - 1) / N, one refused 3 / N. The model's `connect` and
`connect_refused` server costs (`durosim.model.scenario`) come from this measurement; the
connection's round trips are the link's, not counted here. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time

from durosim.lab.cluster import server_cpu_s, server_pid, split_cpus, throwaway_server
from durosim.sim.errors import ExternalError

SETTLE_S = 0.3
"""Wait before reading the CPU time, for the exiting backends to be reaped into the
postmaster's children's time."""


def measure(n: int = 1000) -> dict:
    """Server CPU in ms per statement, per connection opened and per connection refused."""
    import psycopg

    server_cpus, client_cpus = split_cpus(1)
    os.sched_setaffinity(0, set(client_cpus))
    with throwaway_server("connect_cost", cpus=server_cpus) as server:
        url = server.dsn
        with psycopg.connect(url, autocommit=True) as admin:
            pid = server_pid(admin)
            if pid is None:
                raise RuntimeError("the server's process is not visible from here")
            admin.execute("create role app login")
            version = admin.execute("show server_version").fetchone()[0]
            maximum = int(admin.execute("show max_connections").fetchone()[0])

            def cpu_s() -> float:
                time.sleep(SETTLE_S)
                return server_cpu_s(pid) or 0.0

            with psycopg.connect(url, autocommit=True) as one:
                one.execute("select 1")
                before = cpu_s()
                for _ in range(n):
                    one.execute("select 1").fetchone()
                statements_s = cpu_s() - before

            before = cpu_s()
            for _ in range(n):
                with psycopg.connect(url, autocommit=True) as fresh:
                    fresh.execute("select 1").fetchone()
            opened_s = cpu_s() - before

            held = []
            try:
                while len(held) < maximum:
                    held.append(psycopg.connect(url, user="app", autocommit=True))
            except psycopg.OperationalError:
                pass  # every slot an ordinary role may take is taken
            refused = 0
            before = cpu_s()
            for _ in range(n):
                try:
                    psycopg.connect(url, user="app", autocommit=True).close()
                except psycopg.OperationalError:
                    refused += 1
            refused_s = cpu_s() - before
            for connection in held:
                connection.close()
    return {
        "n": n,
        "server_version": version,
        "server_cpus": len(server_cpus),
        "connections_held": len(held),
        "refused": refused,
        "statement_cpu_ms": 1000.0 * statements_s / n,
        "connect_cpu_ms": 1000.0 * (opened_s - statements_s) / n,
        "refused_connect_cpu_ms": 1000.0 * refused_s / refused if refused else None,
    }


USAGE = "usage: python -m durosim.lab.connect_cost [N], N a whole number of connects >= 1"


def main(argv: list[str]) -> int:
    """Measure and print; a bad argument or a server that cannot be made is one line on
    stderr and a non-zero exit."""
    if len(argv) > 1 or (argv and not (argv[0].isdigit() and int(argv[0]) >= 1)):
        print(f"connect_cost: {' '.join(argv)!r}: {USAGE}", file=sys.stderr)
        return 2
    try:
        result = measure(int(argv[0]) if argv else 1000)
    except (ExternalError, OSError, RuntimeError) as err:
        print(f"connect_cost: {str(err).splitlines()[0] if str(err) else err!r}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
