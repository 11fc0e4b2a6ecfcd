"""Option types the commands share."""

from __future__ import annotations

import math

import click


class PositiveFinite(click.ParamType):
    """A number > 0 that is finite (click's FloatRange lets nan and inf through)."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"{value!r}: expected a finite number > 0", param, ctx)
        return number
