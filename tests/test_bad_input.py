"""No number that is not finite is accepted anywhere: the scenario loader, distributions,
what-ifs and the commands' numeric options refuse nan and infinity with one line."""

import math

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from durosim.cli import main
from durosim.model.scenario import load, shipped
from durosim.model.whatif import apply
from durosim.sim.config import ConfigError, toml_value

NUMBER_KEYS = [
    "network.rtt_ms",
    "host.call_overhead_ms",
    "runtime_options.dispatcher_poll_interval_ms",
    "workload.activity_ms",
    "workload.arrival_rate_per_s",
    "workload.duration_s",
    "client.max_poll_delay_ms",
]


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(NUMBER_KEYS), value=st.floats(allow_nan=True, allow_infinity=True))
def test_any_number_loads_finite_or_is_a_config_error(key, value):
    text = "nan" if math.isnan(value) else toml_value(value)
    try:
        s = load(shipped()["lab"], [f"{key}={text}"])
    except ConfigError:
        return
    assert math.isfinite(value)
    assert math.isfinite(s.network.rtt.mean) and math.isfinite(s.workload.duration_s)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("option", ["colocate", "rtt", "poll_interval"])
def test_a_what_if_refuses_what_is_not_finite(option, value):
    with pytest.raises(ConfigError, match="finite"):
        apply(load(shipped()["lab"]), f"{option}={value}")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "lab", "--set", "network.rtt_ms=nan"],
        ["run", "lab", "--set", "network.rtt_ms=inf", "--json"],
        ["run", "lab", "--set", 'network.rtt={kind="uniform",low_ms=1,high_ms=inf}'],
        ["capacity", "lab", "--slo", "p95<2s", "--duration-s", "inf"],
        ["capacity", "lab", "--slo", "p95<2s", "--warmup-s", "nan"],
        ["report", "lab", "--rtt", "nan", "--out", "unused"],
        ["sweep", "lab", "--grid", "network.rtt_ms=1,nan", "--out", "unused.csv"],
        ["record", "--rtt-ms", "nan", "--out", "unused.jsonl"],
    ],
)
def test_the_commands_refuse_nan_and_infinity_in_one_line(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("durosim: error:")
    assert "finite" in lines[0]
    assert list(tmp_path.iterdir()) == [], "nothing written"
