"""What every command shares: loading a scenario with its overrides."""

from __future__ import annotations

from contextlib import contextmanager

from durosim.model import scenario as scenarios


def load_scenario(
    name_or_path: str,
    overrides: tuple[str, ...] | list[str] = (),
    seed: int | None = None,
    replications: int | None = None,
) -> scenarios.Scenario:
    """A scenario file or a shipped scenario's name, with `--set`, `--seed` and
    `--replications` applied."""
    extra = list(overrides)
    if seed is not None:
        extra.append(f"seed={seed}")
    if replications is not None:
        extra.append(f"replications={replications}")
    return scenarios.load(name_or_path, extra)


@contextmanager
def progress_bar(length: int, label: str):
    """A progress bar on stderr when it is a terminal; yields the function that advances it."""
    import sys

    import click

    if not sys.stderr.isatty():
        yield lambda: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        yield lambda: bar.update(1)


def echo_json(value) -> None:
    """Print `value` as indented JSON; a float that is not finite becomes null, never NaN."""
    import json

    import click

    from durosim.sim.stats import json_safe

    click.echo(json.dumps(json_safe(value), indent=2, allow_nan=False))
