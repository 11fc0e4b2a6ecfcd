"""The errors durosim's code raises for a person to read, by what the person should do about them.

Each message is one line that names what is wrong and, for bad input, what is allowed. The
command line turns them into its exit statuses in one place (`durosim.cli`): 2 for bad input,
1 for a failure outside durosim, 130 for an interrupted run.
"""


class InputError(ValueError):
    """Input that cannot be used: a scenario, an override, a trace, a log, a flag."""


class ExternalError(RuntimeError):
    """Something outside durosim failed: a database, a server process, a file system."""


class Interrupted(ExternalError):
    """The user stopped a run (Ctrl-C, SIGTERM); the message says what was kept."""
