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
