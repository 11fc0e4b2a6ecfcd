"""A throwaway PostgreSQL cluster for `durosim record`, as the lab's `pg.sh` made one.

`initdb` into a fresh temporary folder (trust authentication, listening on 127.0.0.1 only, the
unix socket inside that folder, a free port), start the server with `pg_ctl`, create one
database, hand out its URL, then stop the server and remove the folder, also when the run fails
or is interrupted. The server's durability settings are left at PostgreSQL's defaults (fsync and
synchronous_commit on), as in the lab: a recording measures a real server. initdb and postgres
refuse to run as root; as root they run as the `postgres` OS user (`runuser -u postgres --`),
which owns the folder. Left out: everything pg.sh did for the lab's network namespace.

Beyond the lab: `pg_stat_statements` is loaded (each stored procedure's calls and execution time,
for the server's cost per statement) and `cores` pins the server, every backend it forks
included, to the first `cores` CPUs (`taskset`), as a database host of that size would have.
`server_cpu_s` reads the server's CPU time from /proc, for the busy fraction of a run.
`throwaway_server` yields a `Server` that `record --fault database@...` stops (`pg_ctl stop -m
fast`) and starts again on the same data folder and port.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from durosim.sim.errors import ExternalError

SEARCH_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql "
    "(Debian: apt-get install postgresql) or pass --dsn"
)
# The lab's settings (docs/lab/pg.sh); the rest are PostgreSQL's defaults.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "256MB",
    # the server's cost per statement: each top-level call (a stored procedure) timed
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "'top'",
}


class ClusterError(ExternalError):
    """The throwaway cluster could not be made, started or stopped; the message says why."""


def find_binaries() -> Path:
    """The folder holding initdb, pg_ctl and postgres: the PATH's, else the newest
    /usr/lib/postgresql/*/bin."""
    found = [shutil.which(name) for name in SERVER_BINARIES[:2]]
    if all(found):
        folder = Path(os.path.realpath(found[0])).parent
        if all((folder / name).exists() for name in SERVER_BINARIES):
            return folder
    candidates = [Path(p) for p in glob.glob(SEARCH_GLOB)]
    candidates = [p for p in candidates if all((p / name).exists() for name in SERVER_BINARIES)]
    if not candidates:
        raise ClusterError(MISSING)
    return max(candidates, key=_version_key)


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", folder.parent.name)) or (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user() -> list[str]:
    """The command prefix that runs a server binary as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise ClusterError("running as root needs runuser (util-linux) to start PostgreSQL")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError(
            "running as root: PostgreSQL refuses root and there is no 'postgres' OS user "
            "(install postgresql, or run as another user, or pass --dsn)"
        ) from None
    return ["runuser", "-u", "postgres", "--"]


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{what} did not finish in {START_TIMEOUT_S} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ClusterError(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


@contextmanager
def throwaway_cluster(database: str = "durosim", cpus: list[int] | None = None) -> Iterator[str]:
    """Yield the URL of a database on a fresh, private PostgreSQL server; remove it all after.
    `cpus`: run the server on these CPUs only (`split_cpus` chooses them)."""
    with throwaway_server(database, cpus) as server:
        yield server.dsn


@dataclass
class Server:
    """A running throwaway server that can be stopped and started again on the same data folder
    and port (`record --fault database@...`)."""

    binaries: Path
    prefix: list[str]
    pin: list[str]
    data: Path
    log: Path
    port: int = 0
    dsn: str = ""

    def start(self) -> None:
        """`pg_ctl start -w`: returns once the server accepts connections (pg_ctl's -w "waits
        for the startup to complete", PostgreSQL 15 docs, pg_ctl)."""
        _run(
            self.pin
            + self.prefix
            + [
                str(self.binaries / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            "pg_ctl start",
        )

    def stop_fast(self) -> None:
        """`pg_ctl stop -m fast -w`: every backend is terminated at once (its transaction rolled
        back, its client disconnected) and new connections are refused; returns once the server
        is down (PostgreSQL 15 docs, pg_ctl and "Shutting Down the Server": SIGINT)."""
        _run(_fast_stop(self.binaries, self.prefix, self.data), "pg_ctl stop")


@contextmanager
def throwaway_server(database: str = "durosim", cpus: list[int] | None = None) -> Iterator[Server]:
    """`throwaway_cluster`, yielding the `Server` itself (its `dsn` the database's URL)."""
    binaries = find_binaries()
    prefix = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="durosim-pg-"))
    server = Server(binaries, prefix, pin_prefix(cpus), root / "data", root / "postgres.log")
    started = False
    try:
        if prefix:
            shutil.chown(root, "postgres", "postgres")
        _run(
            prefix
            + [
                str(binaries / "initdb"),
                "-D",
                str(server.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        for attempt in range(3):
            server.port = free_port()
            _write_settings(server.data, root, server.port, owner=bool(prefix))
            try:
                server.start()
                started = True
                break
            except ClusterError as err:
                # Another process may have taken the free port between the probe and the start.
                if "could not bind" in _log_tail(server.log) and attempt < 2:
                    continue
                raise ClusterError(f"{err} ({_log_tail(server.log)})") from None
        _create_database(server.port, database)
        server.dsn = f"postgres://postgres@127.0.0.1:{server.port}/{database}"
        yield server
    finally:
        if started:
            _stop(binaries, prefix, server.data)
        shutil.rmtree(root, ignore_errors=True)


def _write_settings(data: Path, socket_dir: Path, port: int, owner: bool) -> None:
    settings = dict(SETTINGS, port=str(port), unix_socket_directories=f"'{socket_dir}'")
    # postgresql.auto.conf is read last and rewritten whole, so a retry on another port works.
    path = data / "postgresql.auto.conf"
    path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
    if owner:
        shutil.chown(path, "postgres", "postgres")


def _create_database(port: int, database: str) -> None:
    import psycopg

    try:
        with psycopg.connect(
            f"postgres://postgres@127.0.0.1:{port}/postgres", autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        with psycopg.connect(
            f"postgres://postgres@127.0.0.1:{port}/{database}", autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
    except psycopg.Error as err:
        raise ClusterError(f"cannot create database {database}: {str(err).strip()}") from None


def pin_prefix(cpus: list[int] | None) -> list[str]:
    """The command prefix that runs a program on `cpus` (nothing for None)."""
    if cpus is None:
        return []
    return [_taskset(), "-c", ",".join(str(cpu) for cpu in cpus)]


def _taskset() -> str:
    found = shutil.which("taskset")
    if found is None:
        raise ClusterError("pinning the server to cores needs taskset (util-linux)")
    return found


def split_cpus(cores: int) -> tuple[list[int], list[int]]:
    """This process's CPUs split in two: the first `cores` for the server, the rest (or all,
    when none is left) for everything else. Split before this process narrows its own."""
    available = sorted(os.sched_getaffinity(0))
    if not 1 <= cores <= len(available):
        raise ClusterError(f"--db-cores {cores}: this machine has {len(available)} CPUs to pin to")
    _taskset()
    return available[:cores], available[cores:] or available


def server_pid(conn) -> int | None:
    """The postmaster's process id, on an open psycopg connection to a server that runs on this
    machine and says where its data folder is (a superuser, or pg_read_all_settings)."""
    import psycopg

    try:
        row = conn.execute("select current_setting('data_directory', true)").fetchone()
    except psycopg.Error:
        return None
    if not row or not row[0]:
        return None
    return _postmaster_pid(Path(row[0]))


def server_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the server with postmaster `pid` has used: the postmaster's
    own and its reaped children's, plus every living child's (the backends, the background
    workers); None when /proc cannot tell."""
    tick = os.sysconf("SC_CLK_TCK")
    own = _proc_stat(pid)
    if own is None:
        return None
    total = own[0] + own[1] + own[2] + own[3]  # utime, stime, cutime, cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            stat = _proc_stat(int(entry), parent=pid)
            if stat is not None:
                total += stat[0] + stat[1]
    return total / tick


def _proc_stat(pid: int, parent: int | None = None) -> tuple[int, int, int, int] | None:
    """utime, stime, cutime, cstime (clock ticks) of `pid`, or None (gone, or not a child of
    `parent` when one is given)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if parent is not None and int(fields[1]) != parent:
        return None
    return int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def _fast_stop(binaries: Path, prefix: list[str], data: Path) -> list[str]:
    """`pg_ctl stop -m fast`, waiting up to STOP_TIMEOUT_S for the server to be down."""
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w"]
    return prefix + pg_ctl + ["-t", str(STOP_TIMEOUT_S), "stop"]


def _stop(binaries: Path, prefix: list[str], data: Path) -> None:
    """Fast shutdown; if pg_ctl cannot do it, kill the postmaster so nothing is left running."""
    pid = _postmaster_pid(data)
    # A second Ctrl-C must not cut the shutdown short and leave the server running.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
    try:
        subprocess.run(
            _fast_stop(binaries, prefix, data), capture_output=True, timeout=STOP_TIMEOUT_S + 5
        )
    except subprocess.TimeoutExpired:
        pass
    finally:
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if old is not None:
            signal.signal(signal.SIGINT, old)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
