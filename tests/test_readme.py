"""The README stays true by itself: every `$ durosim ...` example prints exactly what the README
shows, its set-up commands are the ones CI runs, and its validation tables are what `durosim
validate` writes today from the traces in this repository.

The speed table is a measurement of one machine on one day and is not checked here; `durosim
bench` measures it anew (tests/test_bench.py checks its shape).
"""

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from durosim.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.M | re.S)


def _examples() -> list[tuple[str, str]]:
    """(command, expected output) for each `$ durosim` line of the README's code blocks."""
    out = []
    for block in _blocks(README):
        if not block.startswith("$ durosim"):
            continue
        for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, expected = part.partition("\n")
            out.append((command, expected))
    return out


EXAMPLES = _examples()


def _normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def test_the_readme_has_examples_to_check():
    assert len(EXAMPLES) >= 4
    assert {shlex.split(c)[1] for c, _ in EXAMPLES} >= {"run", "options", "compare", "capacity"}


@pytest.mark.parametrize("command,expected", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_an_example_prints_what_the_readme_shows(command, expected, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = shlex.split(command)
    assert args[0] == "durosim"
    result = CliRunner().invoke(main, args[1:], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _normalised(result.output) == _normalised(expected)


def test_the_setup_commands_are_what_ci_runs():
    setup = [b for b in _blocks(README) if "pip install" in b]
    assert len(setup) >= 2
    install_and_run, run_tests = setup[0].strip(), setup[1].strip()
    assert install_and_run.endswith("pip install . && durosim run lab")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install, _, test_command = run_tests.partition(" && ")
    assert install.replace("pip install", "python -m pip install --quiet") in ci
    assert f"\n{test_command}\n" in ci


def _table(text: str, header: str) -> list[str]:
    """The rows of the Markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


# The report's tables the README shows, by their header; the calls-by-kind table is only in
# docs/validation-real.md.
REAL_TABLES = (
    "| trace | conditions |",
    "| trace | arrivals |",
    "| trace | workflow |",
    "| trace | nodes |",
    "| trace | procedure |",
    "| trace | fault |",
)
PUBLISHED_TABLES = ("| row |", "| from row |")


@pytest.mark.slow
def test_the_validation_tables_are_what_validate_writes_today(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    real, published = tmp_path / "real.md", tmp_path / "published.md"
    runner = CliRunner()
    runner.invoke(main, ["validate", "traces/lab", "traces/recorded", "--report", str(real)])
    runner.invoke(
        main, ["validate", "traces/published", "--infer", "rtt", "--report", str(published)]
    )
    shared = tmp_path / "shared.md"
    runner.invoke(
        main,
        ["validate", "traces/recorded/dbload", "--set", "database.scheduling=shared",
         "--report", str(shared)],
    )  # fmt: skip
    assert shared.read_text() == (ROOT / "docs/validation-dbload-shared.md").read_text()
    real_text, published_text = real.read_text(), published.read_text()
    assert real_text == (ROOT / "docs/validation-real.md").read_text()
    assert published_text == (ROOT / "docs/validation-published.md").read_text()
    for header in REAL_TABLES:
        rows = _table(real_text, header)
        assert rows and rows == _table(README, header), header
    for header in PUBLISHED_TABLES:
        rows = _table(published_text, header)
        assert rows and rows == _table(README, header), header


def test_the_calibration_the_readme_quotes_is_what_calibrate_finds():
    from durosim.evidence.calibrate import fit
    from durosim.evidence.ingest import read_logs

    quoted = re.search(r"finds an RTT of ([\d.]+) ms against ([\d.]+) measured", README)
    ping = re.search(r"the pool's ping as ([\d.]+) RTT", README)
    assert quoted and ping
    result = fit(read_logs([ROOT / "traces/logs/duroxide-0.2.2-pg15-rtt50.jsonl"]))
    assert f"{result.rtt_ms:.2f}" == quoted.group(1)
    assert f"{result.ping_round_trips:.2f}" == ping.group(1)
