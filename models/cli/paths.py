"""The files a command writes: checked before any work, and written so that nothing already
there is lost.

- An output must be a regular file or not exist yet, in a folder that exists: not a folder, a
  device, a pipe or a symlink (which would be replaced), and not one of the command's inputs.
- It is written to a temporary file beside it and renamed over it only once complete, so a
  failed write (permission, disk full) leaves the old file as it was and no partial file; the
  failure is one line.
- A figure is a .png, .svg or .pdf.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from durosim.sim.errors import InputError

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def output_path(path: str | Path | None, inputs: Iterable[str | Path] = ()) -> None:
    """Refuse an output that cannot or must not be written, before any work."""
    if path is None:
        return
    target = Path(path)
    if not target.resolve().parent.is_dir():
        raise InputError(f"{path}: its folder does not exist")
    if target.is_symlink():
        raise InputError(f"{path}: is a symlink; durosim writes a regular file, not through links")
    if target.exists():
        mode = target.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{path}: is a folder, expected a file to write")
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: is not a regular file (a device or a pipe); not written")
        for given in inputs:
            source = Path(given)
            if source.exists() and os.path.samefile(source, target):
                raise InputError(f"{path}: is also an input; an output never replaces its input")


def figure_path(path: str | Path | None, inputs: Iterable[str | Path] = ()) -> None:
    if path is None:
        return
    if Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise InputError(f"{path}: a figure is written as .png, .svg or .pdf")
    output_path(path, inputs)


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary)` for a file beside `path`, then rename it over `path`; on failure
    remove it and raise a one-line InputError."""
    target = Path(path)
    scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(scratch)
        os.replace(scratch, target)
    except OSError as err:
        scratch.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({err.strerror or err})") from None
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    write_atomically(path, lambda scratch: scratch.write_text(text, encoding="utf-8"))


def save_figure(figure, path: str | Path, dpi: int = 110) -> None:
    fmt = Path(path).suffix.lower().lstrip(".")
    write_atomically(path, lambda scratch: figure.savefig(scratch, dpi=dpi, format=fmt))
