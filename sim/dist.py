"""Distributions of durations, in seconds, each knowing its analytic mean.

A scenario writes them in milliseconds: a bare number is a constant, an inline table names a
kind (`{ kind = "lognormal", p50_ms = 50, p99_ms = 80 }`). Samplers draw in blocks from their own
numpy stream, which keeps the per-event cost low and the draws reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from durosim.sim.errors import InputError

_BLOCK = 512
# z such that P(Z <= z) = 0.99 for a standard normal.
_Z99 = 2.3263478740408408


class DistError(InputError):
    """A distribution written wrongly in a scenario."""


@dataclass(frozen=True, slots=True)
class Const:
    value_s: float

    @property
    def mean(self) -> float:
        return self.value_s

    def sampler(self, rng: np.random.Generator | None = None) -> Callable[[], float]:
        value = self.value_s
        return lambda: value

    def to_toml(self) -> float:
        return self.value_s * 1000.0


@dataclass(frozen=True, slots=True)
class Exponential:
    mean_s: float

    @property
    def mean(self) -> float:
        return self.mean_s

    def sampler(self, rng: np.random.Generator) -> Callable[[], float]:
        return _blocked(lambda n: rng.exponential(self.mean_s, n))

    def to_toml(self) -> dict:
        return {"kind": "exponential", "mean_ms": self.mean_s * 1000.0}


@dataclass(frozen=True, slots=True)
class Uniform:
    low_s: float
    high_s: float

    @property
    def mean(self) -> float:
        return (self.low_s + self.high_s) / 2.0

    def sampler(self, rng: np.random.Generator) -> Callable[[], float]:
        return _blocked(lambda n: rng.uniform(self.low_s, self.high_s, n))

    def to_toml(self) -> dict:
        return {"kind": "uniform", "low_ms": self.low_s * 1000.0, "high_ms": self.high_s * 1000.0}


@dataclass(frozen=True, slots=True)
class Normal:
    """Jitter around a mean, cut at zero (the cut shifts the mean only when sd is near mean)."""

    mean_s: float
    sd_s: float

    @property
    def mean(self) -> float:
        return self.mean_s

    def sampler(self, rng: np.random.Generator) -> Callable[[], float]:
        return _blocked(lambda n: np.maximum(rng.normal(self.mean_s, self.sd_s, n), 0.0))

    def to_toml(self) -> dict:
        return {"kind": "normal", "mean_ms": self.mean_s * 1000.0, "sd_ms": self.sd_s * 1000.0}


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A long tail, given by its median and 99th percentile."""

    p50_s: float
    p99_s: float

    @property
    def sigma(self) -> float:
        return math.log(self.p99_s / self.p50_s) / _Z99

    @property
    def mean(self) -> float:
        return self.p50_s * math.exp(self.sigma**2 / 2.0)

    def sampler(self, rng: np.random.Generator) -> Callable[[], float]:
        mu, sigma = math.log(self.p50_s), self.sigma
        return _blocked(lambda n: rng.lognormal(mu, sigma, n))

    def to_toml(self) -> dict:
        return {"kind": "lognormal", "p50_ms": self.p50_s * 1000.0, "p99_ms": self.p99_s * 1000.0}


@dataclass(frozen=True, slots=True)
class Empirical:
    """Resampling of measured values (with replacement)."""

    values_s: tuple[float, ...] = field(default=())

    @property
    def mean(self) -> float:
        return sum(self.values_s) / len(self.values_s)

    def sampler(self, rng: np.random.Generator) -> Callable[[], float]:
        values = np.asarray(self.values_s)
        return _blocked(lambda n: rng.choice(values, n))

    def to_toml(self) -> dict:
        return {"kind": "empirical", "values_ms": [v * 1000.0 for v in self.values_s]}


Dist = Const | Exponential | Uniform | Normal | LogNormal | Empirical

KINDS = ("constant", "exponential", "uniform", "normal", "lognormal", "empirical")


def _blocked(draw: Callable[[int], np.ndarray]) -> Callable[[], float]:
    """Hand out one float at a time from blocks of draws."""
    buffer: list[float] = []

    def sample() -> float:
        if not buffer:
            buffer.extend(reversed(draw(_BLOCK).tolist()))
        return buffer.pop()

    return sample


def _ms(table: dict, key: str, where: str, positive: bool = False) -> float:
    if key not in table:
        raise DistError(f"{where}: missing '{key}'")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DistError(f"{where}.{key}: expected a number of milliseconds, got {value!r}")
    if not math.isfinite(value):
        raise DistError(f"{where}.{key}: must be a finite number of milliseconds, got {value}")
    if value < 0 or (positive and value == 0):
        raise DistError(f"{where}.{key}: must be {'> 0' if positive else '>= 0'}, got {value}")
    return float(value) / 1000.0


def dist_from_toml(value: object, where: str) -> Dist:
    """A number of milliseconds (constant) or an inline table with a `kind`."""
    if isinstance(value, bool):
        raise DistError(f"{where}: expected milliseconds or a distribution table, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise DistError(f"{where}: must be a finite number of milliseconds, got {value}")
        if value < 0:
            raise DistError(f"{where}: must be >= 0 ms, got {value}")
        return Const(float(value) / 1000.0)
    if not isinstance(value, dict):
        raise DistError(f"{where}: expected milliseconds or a distribution table, got {value!r}")
    kind = value.get("kind")
    allowed = {
        "constant": {"kind", "value_ms"},
        "exponential": {"kind", "mean_ms"},
        "uniform": {"kind", "low_ms", "high_ms"},
        "normal": {"kind", "mean_ms", "sd_ms"},
        "lognormal": {"kind", "p50_ms", "p99_ms"},
        "empirical": {"kind", "values_ms"},
    }
    if not isinstance(kind, str) or kind not in allowed:
        raise DistError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    extra = set(value) - allowed[kind]
    if extra:
        raise DistError(
            f"{where}: unknown key(s) {', '.join(sorted(extra))} for kind {kind!r}; "
            f"allowed: {', '.join(sorted(allowed[kind]))}"
        )
    match kind:
        case "constant":
            return Const(_ms(value, "value_ms", where))
        case "exponential":
            return Exponential(_ms(value, "mean_ms", where, positive=True))
        case "uniform":
            low, high = _ms(value, "low_ms", where), _ms(value, "high_ms", where)
            if high < low:
                raise DistError(f"{where}: high_ms must be >= low_ms")
            return Uniform(low, high)
        case "normal":
            return Normal(_ms(value, "mean_ms", where), _ms(value, "sd_ms", where))
        case "lognormal":
            p50 = _ms(value, "p50_ms", where, positive=True)
            p99 = _ms(value, "p99_ms", where, positive=True)
            if p99 <= p50:
                raise DistError(f"{where}: p99_ms must be > p50_ms")
            return LogNormal(p50, p99)
        case _:
            values = value.get("values_ms")
            if not isinstance(values, list) or not values:
                raise DistError(f"{where}.values_ms: expected a non-empty list of milliseconds")
            return Empirical(tuple(_ms({"v": v}, "v", f"{where}.values_ms") for v in values))
