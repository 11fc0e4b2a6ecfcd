"""A helper of `durosim record` in a child process of its own (its own GIL): it prints one line
when it is ready, and runs until its standard input closes. Its own session, so a terminal's
Ctrl-C reaches only the parent, which stops it; one that does not stop in time is killed."""

from __future__ import annotations

import subprocess
import sys


class ChildProcess:
    """`python -c CODE ARGS...` as a context manager: `start()` returns the child's first line
    of output, or raises OSError with the last line of its stderr; `stop()` closes its stdin."""

    stop_timeout_s = 5.0

    def __init__(self, what: str, code: str, args: list[str]):
        self.what = what
        # -P: the current folder is not put first on the child's sys.path, so a file there named
        # like a module (bisect.py, random.py) cannot replace the one the child imports
        self.command = [sys.executable, "-P", "-c", code, *args]
        self.process: subprocess.Popen | None = None
        self.env: dict[str, str] | None = None
        """The child's environment; None: this process's."""

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def first_line(self) -> str:
        self.launch()
        return self.read_first_line()

    def launch(self) -> None:
        """Start the child (`read_first_line` then waits for what it says first)."""
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env=self.env,
        )

    def read_first_line(self) -> str:
        line = self.process.stdout.readline().strip()
        if not line:
            error = self.process.stderr.read().strip().splitlines()
            self.stop()
            raise OSError(f"{self.what} did not start: {error[-1] if error else 'no output'}")
        return line

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.stdin.close()
            process.wait(timeout=self.stop_timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        self.exited()
        for stream in (process.stdout, process.stderr):
            stream.close()

    def exited(self) -> None:
        """Called once the child has exited, before its output streams are closed."""
