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


def read_input(
    path, what: str, error: type[InputError] = InputError, limit_mb: int = 4096
) -> bytes:
    """An input file's bytes, or one line saying why it cannot be read: missing, a folder, a
    device or pipe (`/dev/zero` would never end), unreadable, or larger than `limit_mb`."""
    import os
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a directory, expected {what}")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: is not a regular file (a device or a pipe), expected {what}")
    if info.st_size > limit_mb * 2**20:
        raise error(
            f"{path}: {info.st_size / 2**20:.0f} MiB is more than the {limit_mb} MiB read "
            f"for {what}"
        )
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror})") from None
