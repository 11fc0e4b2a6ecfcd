"""Where a sweep's points run: in this process, in local processes
(`concurrent.futures.ProcessPoolExecutor`, forked, one per core asked for), or on a Dask cluster
(`dask.distributed`, an optional extra). Each executor maps a function over argument tuples and
yields the results as they finish."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from durosim.sim.errors import InputError

DASK_INSTALL = "pip install 'durosim[sweep-dask]'"


class SweepError(InputError):
    """A sweep that cannot run (a grid, its CSV, its executor); the message is one line."""


class InProcess:
    workers = 1

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map_unordered(self, fn: Callable, calls: Iterable[tuple]) -> Iterator:
        for call in calls:
            yield fn(*call)


def _exit_with(parent: int) -> None:
    """A worker's watchdog: a killed sweep (SIGKILL, SIGTERM) must not leave idle workers. Ctrl-C
    reaches the whole process group: a worker then ends at once and quietly, and the parent
    keeps what finished."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class LocalProcesses:
    def __init__(self, jobs: int):
        self.workers = jobs
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalProcesses:
        gc.freeze()  # forked workers then leave the parent's objects alone: no copy-on-write
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, initializer=_exit_with, initargs=(os.getpid(),)
        )
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()

    def map_unordered(self, fn: Callable, calls: Iterable[tuple]) -> Iterator:
        futures = [self._pool.submit(fn, *call) for call in calls]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


class Dask:
    """A `dask.distributed` cluster; its workers need durosim installed (same version)."""

    def __init__(self, scheduler: str):
        try:
            from distributed import Client
        except ImportError:
            raise SweepError(f"--executor dask needs dask.distributed: {DASK_INSTALL}") from None
        self._scheduler = scheduler
        self._client_type = Client
        self._client = None
        self.workers = 1

    def __enter__(self) -> Dask:
        try:
            self._client = self._client_type(self._scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise SweepError(
                f"--scheduler {self._scheduler}: cannot reach the Dask scheduler ({message})"
            ) from None
        self.workers = max(1, sum(self._client.nthreads().values()))
        return self

    def __exit__(self, *exc) -> None:
        self._client.close()

    def map_unordered(self, fn: Callable, calls: Iterable[tuple]) -> Iterator:
        from distributed import as_completed as finished

        futures = [self._client.submit(fn, *call, pure=False) for call in calls]
        try:
            for future in finished(futures):
                yield future.result()
        finally:
            self._client.cancel(futures)


def executor(kind: str, jobs: int = 1, scheduler: str | None = None):
    if kind == "dask":
        if not scheduler:
            raise SweepError("--executor dask needs --scheduler ADDRESS, e.g. tcp://host:8786")
        return Dask(scheduler)
    if scheduler:
        raise SweepError("--scheduler is for --executor dask")
    return InProcess() if jobs == 1 else LocalProcesses(jobs)
