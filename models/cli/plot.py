"""`durosim plot`: figures from saved result rows (the JSON of `compare`, `capacity` or `sweep`),
without simulating again."""

from __future__ import annotations

import json
from pathlib import Path

import click

from durosim.cli.paths import figure_path, save_figure
from durosim.sim.errors import InputError

KINDS = ("options", "breakdown", "capacity", "sweep", "faults")


def _kind_of(data: object) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("faults"), dict):
        return "faults"
    if isinstance(data, dict) and isinstance(data.get("traces"), list):
        return "faults"  # validate --json: the recordings with faults, over time
    if isinstance(data, dict) and isinstance(data.get("rows"), list) and "computed" in data:
        return "sweep"
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        return "options"
    if isinstance(data, dict) and isinstance(data.get("points"), list):
        return "capacity"
    return None


@click.command()
@click.argument("rows", type=click.Path(dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="What to draw (default: options for compare rows, capacity for capacity, sweep for "
    "sweep: latency and the database's CPU against the one key it varied; faults for `run "
    "--json` of a scenario with faults, or `validate --json` of recordings with faults: "
    "latency and throughput over time).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The figure to write (.png, .svg or .pdf).",
)
def plot(rows, kind, out):
    """Draw a figure from ROWS, the JSON that `durosim compare --json`, `durosim capacity
    --json`, `durosim sweep --json`, `durosim run --json` (with faults) or `durosim validate --json`
    (recordings with faults) printed: options side
    by side, where the time goes, the throughput-latency curve, latency and database CPU against
    a swept key, or latency and throughput over time around faults."""
    figure_path(out, [rows])
    try:
        data = json.loads(Path(rows).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{rows}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{rows}: not JSON ({err})") from None
    found = _kind_of(data)
    if found is None:
        raise InputError(
            f"{rows}: not the JSON of `durosim compare`, `durosim capacity`, `durosim sweep` or "
            "`durosim run` with faults"
        )
    kind = kind or found
    single = ("capacity", "sweep", "faults")
    if kind != found and (kind in single or found in single):
        raise InputError(f"--kind {kind} does not fit {rows}, which holds {found} rows")
    if kind == "options":
        from durosim.plots.whatif import options_side_by_side as draw
    elif kind == "breakdown":
        from durosim.plots.whatif import breakdown_bars as draw
    elif kind == "sweep":
        from functools import partial

        from durosim.experiments.sweep import METRICS
        from durosim.plots.capacity import sweep_lines

        first = data["rows"][0] if data["rows"] and isinstance(data["rows"][0], dict) else {}
        draw = partial(sweep_lines, keys=[k for k in first if k not in METRICS])
    elif kind == "faults":
        from durosim.plots.faults import over_time, validated

        def draw(result: dict):
            if "traces" in result:
                return validated(result)
            return over_time(result["faults"], title=result.get("scenario", ""))
    else:
        from durosim.plots.capacity import throughput_latency as draw
    try:
        figure = draw(data)
    except (KeyError, TypeError) as err:
        raise InputError(f"{rows}: a row lacks {err}; expected the JSON of durosim") from None
    except ValueError as err:
        raise InputError(f"{rows}: --kind {kind} draws {err}") from None
    save_figure(figure, out)
    click.echo(f"wrote {out}")
