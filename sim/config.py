"""Strict configuration loading: TOML tables into frozen dataclasses.

- A section is a nested dataclass; a key the dataclass does not have is an error naming the
  section and listing the keys it allows.
- Humans write milliseconds: a field `poll_interval_s` is written `poll_interval_ms` in TOML (or
  `poll_interval_s`, in seconds, where that reads better, as `duration_s = 10`), and
  a distribution field `rtt` is written `rtt_ms = 50` (a constant) or `rtt = { kind = ... }`.
- Values are checked against the field's type; `Literal` fields list what is allowed, and a
  field's `metadata["check"]` may add a range check.
- `--set KEY=VALUE` overrides edit the raw table before loading; the value is read as TOML, so
  `--set workload.fanout=10` is an int and `--set runtime="duroxide-2025-11"` a string (quotes
  may be left out for a plain word).
Defaults live only in the dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tomllib
import types
import typing
from pathlib import Path

from durosim.sim.dist import Dist, DistError, dist_from_toml
from durosim.sim.errors import InputError, read_input


class ConfigError(InputError):
    """A configuration that cannot be used; the message names the key and what is allowed."""


def _is_dist(tp: object) -> bool:
    return tp is Dist or (
        typing.get_origin(tp) in (typing.Union, types.UnionType)
        and set(typing.get_args(tp)) == set(typing.get_args(Dist))
    )


def _strip_optional(tp: object) -> tuple[object, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and not _is_dist(tp):
            rest = tuple(a for a in args if a is not type(None))
            return (rest[0] if len(rest) == 1 else typing.Union[rest]), True  # noqa: UP007
    return tp, False


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


@functools.cache
def toml_keys(cls: type) -> dict[str, str]:
    """TOML key -> field name, for one dataclass."""
    keys: dict[str, str] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp, _ = _strip_optional(hints[f.name])
        if _is_dist(tp):
            keys[f.name] = f.name
            keys[f.name + "_ms"] = f.name
        elif f.name.endswith("_s") and not f.name.endswith("_per_s") and tp is float:
            keys[f.name[:-2] + "_ms"] = f.name
            keys[f.name] = f.name
        else:
            keys[f.name] = f.name
    return keys


def _convert(value: object, tp: object, where: str, key: str) -> object:
    tp, optional = _strip_optional(tp)
    if value is None and optional:
        return None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table [{where}], got {value!r}")
        return from_table(tp, value, where)
    if _is_dist(tp):
        try:
            return dist_from_toml(value, where)
        except DistError as err:
            raise ConfigError(str(err)) from None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        # e.g. `int | tuple[int, ...]`: the first arm that takes the value
        problems = []
        for arm in typing.get_args(tp):
            try:
                return _convert(value, arm, where, key)
            except ConfigError as err:
                problems.append(str(err).split(": ", 1)[-1])
        raise ConfigError(f"{where}: {' or '.join(problems)}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{where}: {value!r} is not allowed; use one of {', '.join(map(repr, allowed))}"
            )
        return value
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        out = {}
        for k, v in value.items():
            name = k[:-3] if _is_dist(value_tp) and k.endswith("_ms") else k
            out[name] = _convert(v, value_tp, f"{where}.{k}", k)
        return out
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_convert(v, item_tp, f"{where}[{i}]", key) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value}")
        return float(value) / 1000.0 if key.endswith("_ms") else float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def from_table(cls: type, table: dict, where: str = "") -> object:
    """Build a dataclass from a TOML table, strictly."""
    hints = _hints(cls)
    keys = toml_keys(cls)
    kwargs: dict[str, object] = {}
    seen: dict[str, str] = {}
    for key, value in table.items():
        path = f"{where}.{key}" if where else key
        if key not in keys:
            section = f"[{where}]" if where else "the top level"
            raise ConfigError(
                f"unknown key '{path}' in {section}; allowed: {', '.join(sorted(keys))}"
            )
        name = keys[key]
        if name in seen:
            raise ConfigError(f"'{path}' and '{seen[name]}' set the same value; keep one")
        seen[name] = path
        kwargs[name] = _convert(value, hints[name], path, key)
    try:
        made = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or 'scenario'}: {err}") from None
    for f in dataclasses.fields(cls):
        check = f.metadata.get("check")
        if check is not None:
            problem = check(getattr(made, f.name))
            if problem:
                key = next(k for k, n in keys.items() if n == f.name)
                raise ConfigError(f"{where + '.' if where else ''}{key}: {problem}")
    return made


def to_table(obj: object) -> dict:
    """The TOML-shaped table of a dataclass (milliseconds for `_s` fields)."""
    table: dict[str, object] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        table.update(_to_toml(f.name, value))
    return table


def _to_toml(name: str, value: object) -> dict:
    if value is None:
        return {}
    if dataclasses.is_dataclass(value):
        if hasattr(value, "to_toml"):
            rendered = value.to_toml()
            return {name + "_ms": rendered} if isinstance(rendered, float) else {name: rendered}
        return {name: to_table(value)}
    if isinstance(value, dict):
        inner: dict[str, object] = {}
        for k, v in value.items():
            inner.update(_to_toml(k, v))
        return {name: inner}
    if isinstance(value, tuple):
        return {name: [to_table(v) if dataclasses.is_dataclass(v) else v for v in value]}
    if isinstance(value, float) and name.endswith("_s") and not name.endswith("_per_s"):
        return {name[:-2] + "_ms": value * 1000.0}
    return {name: value}


def read_toml(path: str | Path) -> dict:
    data = read_input(path, "a .toml file", ConfigError, limit_mb=16)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a scenario is a TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None


def dump_toml(table: dict) -> str:
    """A table as TOML text: plain values first, then sub-tables as [sections] and lists of
    tables as [[arrays]]; a table inside a list is written inline."""
    lines: list[str] = []

    def inline(value: object) -> str:
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{k} = {inline(v)}" for k, v in value.items()) + " }"
        if isinstance(value, list | tuple):
            return "[" + ", ".join(inline(v) for v in value) + "]"
        return toml_value(value)

    def is_table_list(value: object) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    def section(prefix: str, node: dict) -> None:
        for key, value in node.items():
            if not isinstance(value, dict) and not is_table_list(value):
                lines.append(f"{key} = {inline(value)}")
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and not _is_dist_table(value):
                lines.extend(["", f"[{name}]"])
                section(name, value)
            elif isinstance(value, dict):
                lines.append(f"{key} = {inline(value)}")
            elif is_table_list(value):
                for item in value:
                    lines.extend(["", f"[[{name}]]"])
                    for k, v in item.items():
                        lines.append(f"{k} = {inline(v)}")

    section("", table)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_dist_table(value: dict) -> bool:
    """A distribution's table (`{ kind = "lognormal", ... }`) is a value, not a section."""
    return "kind" in value and not any(isinstance(v, dict) for v in value.values())


def toml_value(value: object) -> str:
    """A value written as TOML, for building `KEY=VALUE` overrides."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return repr(value)


def parse_override(text: str) -> tuple[list[str], object]:
    """'a.b=VALUE' -> (['a', 'b'], value read as TOML, or as a plain string)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. network.rtt_ms=50")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"--set {text!r}: empty part in key {key!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if not raw or any(c in raw for c in "{}[]\"'="):
            raise ConfigError(f"--set {text!r}: {raw!r} is not a TOML value") from None
        value = raw
    return path, value


def apply_overrides(table: dict, overrides: list[str]) -> dict:
    """A copy of `table` with each 'a.b=VALUE' applied; `x_ms` replaces a table `x` and back."""
    out = _deep_copy(table)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: '{part}' is a value, not a section")
            node = child
        leaf = path[-1]
        stem = leaf[:-3] if leaf.endswith("_ms") else leaf[:-2] if leaf.endswith("_s") else leaf
        for twin in (stem, stem + "_ms", stem + "_s"):
            if twin != leaf:
                node.pop(twin, None)
        node[leaf] = value
    return out


def _deep_copy(table: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in table.items()}
