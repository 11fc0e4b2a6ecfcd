"""Checks on the files a command will write, made before any work: their folder must exist,
and a figure must be a .png, .svg or .pdf."""

from __future__ import annotations

from pathlib import Path

from durosim.sim.errors import InputError

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def output_path(path: str | None) -> None:
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise InputError(f"{path}: its folder does not exist")


def figure_path(path: str | None) -> None:
    if path is None:
        return
    if Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise InputError(f"{path}: a figure is written as .png, .svg or .pdf")
    output_path(path)
