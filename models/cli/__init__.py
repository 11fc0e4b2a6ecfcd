"""The `durosim` command: the composition root (scenario files in, tables and JSON out).

Each command group is a module of plain `click` commands added to the group here, and here alone
the errors the rest of durosim raises, and click's own usage errors, become the command line's
one-line errors and exit statuses: bad input 2, a failure outside durosim 1, an interrupted run
130.
"""

from __future__ import annotations

import click

from durosim.cli.capacity import capacity
from durosim.cli.measure import calibrate, ingest
from durosim.cli.plot import plot
from durosim.cli.record import record
from durosim.cli.run import init, run, scenarios, show
from durosim.cli.sweep import bench, sweep
from durosim.cli.validate import validate
from durosim.cli.whatif import compare, options, report
from durosim.sim.errors import ExternalError, InputError, Interrupted


class CliError(click.ClickException):
    """One line on stderr, `durosim: error: ...`, and the exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"durosim: error: {self.format_message()}", err=True)


class Commands(click.Group):
    """The command group that turns durosim's errors into `CliError`s."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as err:
            raise CliError(f"{err.format_message()} (see '{info_name} --help')", 2) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            raise CliError(f"{err.format_message()} (see '{where} --help')", 2) from None
        except InputError as err:
            raise CliError(str(err), 2) from None
        except Interrupted as err:
            raise CliError(str(err), 130) from None
        except ExternalError as err:
            raise CliError(str(err), 1) from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="durosim")
def main() -> None:
    """durosim: predict the latency and throughput of duroxide on PostgreSQL, say where the time
    goes, and check the predictions against real measurements."""


for command in (
    run,
    scenarios,
    show,
    init,
    validate,
    record,
    ingest,
    calibrate,
    options,
    compare,
    report,
    capacity,
    sweep,
    bench,
    plot,
):
    main.add_command(command)
