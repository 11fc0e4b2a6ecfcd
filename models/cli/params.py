"""Option types the commands share."""

from __future__ import annotations

import math

import click


class Finite(click.ParamType):
    """A finite number at least `low` (above it when `open`): click's FloatRange lets nan and
    inf through."""

    name = "number"

    def __init__(self, low: float = 0.0, open: bool = False):
        self.low = low
        self.open = open

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        bound = "> " if self.open else ">= "
        if not math.isfinite(number) or number < self.low or (self.open and number == self.low):
            self.fail(f"{value!r}: expected a finite number {bound}{self.low:g}", param, ctx)
        return number


def PositiveFinite() -> Finite:  # noqa: N802 - reads as a type where options use it
    """A finite number > 0."""
    return Finite(0.0, open=True)


def executor_options(work: str):
    """`--jobs`, `--executor` and `--scheduler`, for commands that spread `work` (points,
    replications) over processes or a Dask cluster."""
    from durosim.experiments.executors import DASK_INSTALL

    def add(command):
        for option in reversed(
            [
                click.option(
                    "--jobs",
                    type=click.IntRange(min=1),
                    default=1,
                    show_default=True,
                    help=f"Local processes running {work} (1: in this process; the results do "
                    "not depend on it).",
                ),
                click.option(
                    "--executor",
                    type=click.Choice(["local", "dask"]),
                    default="local",
                    show_default=True,
                    help=f"dask: run the {work} on a Dask cluster ({DASK_INSTALL}).",
                ),
                click.option(
                    "--scheduler",
                    metavar="ADDRESS",
                    help="The Dask scheduler, e.g. tcp://h:8786 (its workers need durosim "
                    "installed).",
                ),
            ]
        ):
            command = option(command)
        return command

    return add


def usable_jobs(executor: str, jobs: int, tasks: int, work: str) -> int:
    """No more local processes than `tasks` and cores; says so on stderr when it takes fewer."""
    import os

    if executor != "local":
        return jobs
    usable = max(1, min(jobs, tasks, os.cpu_count() or 1))
    if usable < jobs:
        click.echo(f"--jobs {jobs}: {usable} process(es), no more than {work} and cores", err=True)
    return usable
