"""durosim: a discrete-event simulator of the duroxide durable-execution runtime on PostgreSQL.

The package's parts, by concern:
- `durosim.sim`: generic blocks (link, database server, pool, dispatcher loop, distributions,
  random streams, config loading, statistics), nothing of duroxide;
- `durosim.model`: duroxide on PostgreSQL, wired from those blocks;
- `durosim.experiments`: replications, comparisons, sweeps, capacity searches, the benchmark;
- `durosim.evidence`: the trace format, log ingest, calibration, validation;
- `durosim.lab`: the real runtime on a real PostgreSQL, for `durosim record`;
- `durosim.cli`: the `durosim` command; `durosim.plots`: figures from result rows.

Docstrings cite duroxide's, duroxide-pg's and sqlx's source by short names (dx-cur, pg-cur,
dx-seed, pg-seed, ...) defined with their repository and commit in docs/sources.md.

From Python (`durosim.api`, the same results as the command line):

    import durosim
    s = durosim.load("lab", {"network.rtt_ms": 50})
    durosim.run(s).to_dict()      # what `durosim run lab --set network.rtt_ms=50 --json` prints
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("durosim")
except PackageNotFoundError:  # pragma: no cover - only when run from an uninstalled tree
    __version__ = "0+unknown"

__all__ = ["__version__", "capacity", "compare", "load", "run", "sweep", "validate"]


def __getattr__(name: str):
    """The API's functions, imported when first used (the command line does not need them)."""
    if name in __all__:
        from durosim import api

        return getattr(api, name)
    raise AttributeError(f"module 'durosim' has no attribute {name!r}")
