"""What produced a result: the durosim version, the runtime profile, the seed and replications,
and a digest of the effective scenario (every value resolved), in every `--json` and every file
a run writes, so a number can be traced to what made it."""

from __future__ import annotations

from durosim.experiments.sweep import config_digest
from durosim.model.scenario import Scenario


def provenance(scenario: Scenario) -> dict:
    from durosim import __version__

    return {
        "durosim": __version__,
        "runtime": scenario.runtime,
        "seed": scenario.seed,
        "replications": scenario.replications,
        "scenario_digest": config_digest(scenario),
    }
