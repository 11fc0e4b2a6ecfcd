"""Workflows as scenarios describe them: each step kind's turns, calls and time, the traffic mix,
and the bad input a workflow can hold."""

import json

import pytest
from click.testing import CliRunner

from durosim.cli import main
from durosim.experiments.results import run_replications, summarize
from durosim.model.scenario import load_table

RTT_MS = 20.0


def scenario(workflows: str, **workload):
    """A scenario at constant RTT 20 ms, one orchestration at a time, with these workflows
    (TOML text of `[[workload.workflows]]` tables)."""
    import tomllib

    table = tomllib.loads(workflows)
    table.setdefault("workload", {}).update(
        {"mode": "sequential", "count": 8, "warmup": 1, **workload}
    )
    table["network"] = {"rtt_ms": RTT_MS}
    table["replications"] = 2
    return load_table(table)


def summary(workflows: str, **workload):
    s = scenario(workflows, **workload)
    return summarize(s, run_replications(s))


ONE_ACTIVITY = """
[[workload.workflows]]
name = "w"
weight = 1
steps = [ { kind = "activity", duration_ms = 0 } ]
"""


def test_the_fanout_as_a_workflow_is_todays_fanout():
    explicit = summary(
        """
[[workload.workflows]]
name = "fanout"
weight = 1
steps = [ { kind = "fanout", n = 5, duration_ms = 0 } ]
"""
    )
    s = load_table({"network": {"rtt_ms": RTT_MS}, "replications": 2,
                    "workload": {"mode": "sequential", "count": 8, "warmup": 1}})  # fmt: skip
    default = summarize(s, run_replications(s))
    assert explicit.latencies_ms == default.latencies_ms
    assert explicit.calls_per_orchestration == default.calls_per_orchestration


def test_a_timer_adds_its_delay_and_its_lateness_is_at_most_a_poll():
    base = summary(ONE_ACTIVITY)
    timed = summary(
        ONE_ACTIVITY.replace("steps = [", 'steps = [ { kind = "timer", duration_ms = 700 },')
    )
    assert timed.breakdown_ms["timer"] == pytest.approx(700.0)
    extra = timed.latency_ms["mean"] - base.latency_ms["mean"]
    # the timer's turn: its delay, then up to one idle poll (100 ms) and one turn (fetch + ack,
    # 2 calls of 2 RTT each) before the workflow goes on
    assert 700.0 <= extra <= 700.0 + 100.0 + 4 * 2 * RTT_MS + 50.0
    assert timed.turns_per_orchestration == pytest.approx(base.turns_per_orchestration + 1)


def test_a_sub_orchestration_costs_the_child_its_own_turns():
    parent = summary(
        """
[[workload.workflows]]
name = "parent"
weight = 1
steps = [ { kind = "sub_orchestration", workflow = "child" } ]

[[workload.workflows]]
name = "child"
steps = [ { kind = "activity", duration_ms = 0 } ]
"""
    )
    # parent: start turn (schedules the child), completion turn; child: start turn (schedules
    # the activity), completion turn; one activity (fetch, history read, ack)
    assert parent.turns_per_orchestration == pytest.approx(4.0)
    assert parent.calls_per_orchestration["ack_work_item"] == pytest.approx(1.0)
    assert parent.calls_per_orchestration["enqueue_orchestrator_work"] == pytest.approx(1.0)


def test_an_event_raised_after_the_wait_completes_it():
    late = summary(
        ONE_ACTIVITY.replace("steps = [", 'steps = [ { kind = "event", after_ms = 1500 },')
    )
    assert late.failed == 0
    assert late.breakdown_ms["event_wait"] > 1000.0
    assert late.latency_ms["p50"] > 1500.0
    # raise_event is one more enqueue_orchestrator_work call, and one more turn
    assert late.calls_per_orchestration["enqueue_orchestrator_work"] == pytest.approx(2.0)


def test_an_event_raised_before_the_wait_is_lost_and_the_client_gives_up():
    early = summary(
        ONE_ACTIVITY.replace(
            "steps = [", 'steps = [ { kind = "activity", duration_ms = 300 }, '
            '{ kind = "event", after_ms = 0 },'
        ),
        wait_timeout_ms=3000, count=3,
    )  # fmt: skip
    assert early.completed == 0 and early.failed > 0


def test_continue_as_new_runs_the_workflow_again_in_a_new_execution():
    again = summary(
        ONE_ACTIVITY.replace(
            'steps = [ { kind = "activity", duration_ms = 0 } ]',
            'steps = [ { kind = "activity", duration_ms = 0 }, '
            '{ kind = "continue_as_new", times = 2 } ]',
        )
    )
    once = summary(ONE_ACTIVITY)
    assert once.turns_per_orchestration == pytest.approx(2.0)
    assert again.turns_per_orchestration == pytest.approx(6.0), "three executions of two turns"
    assert again.calls_per_orchestration["ack_work_item"] == pytest.approx(3.0)


def test_fanout_branches_of_steps_run_side_by_side():
    branches = summary(
        """
[[workload.workflows]]
name = "w"
weight = 1
steps = [ { kind = "fanout", n = 3, branch = [
  { kind = "activity", duration_ms = 0 }, { kind = "timer", duration_ms = 400 } ] } ]
"""
    )
    assert branches.calls_per_orchestration["ack_work_item"] == pytest.approx(3.0)
    assert branches.breakdown_ms["timer"] == pytest.approx(400.0), "one timer on the path"


def test_a_fanout_of_choices_draws_its_width():
    drawn = summary(
        ONE_ACTIVITY.replace(
            'steps = [ { kind = "activity", duration_ms = 0 } ]',
            'steps = [ { kind = "fanout", n = [1, 3], duration_ms = 0 } ]',
        ),
        count=60,
    )
    width = drawn.calls_per_orchestration["ack_work_item"]
    assert 1.5 < width < 2.5, width


def test_the_mix_follows_the_weights_and_reports_each_workflow():
    mix = summary(
        """
[[workload.workflows]]
name = "short"
weight = 3
steps = [ { kind = "activity", duration_ms = 0 } ]

[[workload.workflows]]
name = "long"
weight = 1
steps = [ { kind = "timer", duration_ms = 1000 } ]
""",
        count=200,
    )
    rows = mix.workflows()
    assert set(rows) == {"short", "long"}
    assert 0.65 < rows["short"]["share"] < 0.85
    assert rows["long"]["latency_ms"]["p50"] > rows["short"]["latency_ms"]["p50"] + 900.0
    total = rows["short"]["throughput_per_s"] + rows["long"]["throughput_per_s"]
    assert total == pytest.approx(mix.throughput_per_s, rel=1e-3)


BAD = [
    ('steps = [ { kind = "sleep", duration_ms = 1 } ]', "'sleep' is not allowed"),
    ('steps = [ { kind = "sub_orchestration", workflow = "w" } ]', "calls itself"),
    ('steps = [ { kind = "fanout", n = 0, duration_ms = 1 } ]', "n must be >= 1"),
    ('steps = [ { kind = "activity", duration_ms = -5 } ]', "must be >= 0"),
    ('steps = [ { kind = "activity", duration_ms = nan } ]', "finite"),
    ('steps = [ { kind = "timer", duration_ms = inf } ]', "finite"),
    ('steps = [ { kind = "activity", workflow = "x", duration_ms = 3 } ]', "does not apply"),
    ('steps = [ { kind = "continue_as_new" }, { kind = "activity", duration_ms = 1 } ]', "last"),
    ('steps = [ { kind = "sub_orchestration", workflow = "nope" } ]', "unknown workflow"),
    ("steps = []", "at least one step"),
    ('steps = [ { kind = "activity", duration_ms = 1, failure_rate = 1.0 } ]', "failure_rate"),
    ('steps = [ { kind = "activity", duration_ms = 1, max_attempts = 0 } ]', "max_attempts"),
    ('steps = [ { kind = "timer", duration_ms = 1, max_attempts = 2 } ]', "does not apply"),
]


@pytest.mark.parametrize("steps, message", BAD, ids=[m for _, m in BAD])
def test_a_bad_workflow_is_one_line_naming_the_workflow(tmp_path, steps, message):
    path = tmp_path / "bad.toml"
    path.write_text(f'[[workload.workflows]]\nname = "w"\nweight = 1\n{steps}\n')
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "w" in result.output


@pytest.mark.parametrize("weight", ["0", "-1", "nan", "inf"])
def test_a_weight_must_be_positive_and_finite(tmp_path, weight):
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[[workload.workflows]]\nname = "w"\nweight = {weight}\n'
        'steps = [ { kind = "activity", duration_ms = 1 } ]\n'
    )
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2 and "weight" in result.output
    assert "finite number" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_sub_orchestration_cycle_through_another_workflow_is_refused(tmp_path):
    path = tmp_path / "cycle.toml"
    path.write_text(
        '[[workload.workflows]]\nname = "a"\nweight = 1\n'
        'steps = [ { kind = "sub_orchestration", workflow = "b" } ]\n'
        '[[workload.workflows]]\nname = "b"\n'
        'steps = [ { kind = "sub_orchestration", workflow = "a" } ]\n'
    )
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2 and "calls itself as a sub-orchestration" in result.output


def test_run_json_reports_each_workflow(tmp_path):
    path = tmp_path / "mix.toml"
    path.write_text(
        '[[workload.workflows]]\nname = "a"\nweight = 1\n'
        'steps = [ { kind = "activity", duration_ms = 1 } ]\n'
        '[[workload.workflows]]\nname = "b"\nweight = 1\n'
        'steps = [ { kind = "timer", duration_ms = 10 } ]\n'
    )
    result = CliRunner().invoke(main, ["run", str(path), "--json", "--replications", "2"])
    out = json.loads(result.output)
    assert set(out["workflows"]) == {"a", "b"}
    assert sum(row["completed"] for row in out["workflows"].values()) == out["measured"]


MIX = (
    '[[workload.workflows]]\nname = "a"\nweight = 1\n'
    'steps = [ { kind = "activity", duration_ms = 1 } ]\n'
    '[[workload.workflows]]\nname = "b"\nweight = 1\n'
    'steps = [ { kind = "timer", duration_ms = 300 } ]\n'
    "[network]\nrtt_ms = 20\n[workload]\ncount = 10\n"
)


def test_sweep_rows_carry_each_workflow(tmp_path):
    import csv

    path = tmp_path / "mix.toml"
    path.write_text(MIX)
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(
        main, ["sweep", str(path), "--grid", "network.rtt_ms=10,40", "--replications", "1",
               "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2
    for row in rows:
        assert int(row["a.completed"]) + int(row["b.completed"]) == 10, "the measured ones"
        assert float(row["b.latency_p50_ms"]) >= 300.0, "b waits for its 300 ms timer"
    assert float(rows[1]["a.latency_p50_ms"]) > float(rows[0]["a.latency_p50_ms"])


def test_compare_shows_each_workflow_beside_the_totals(tmp_path):
    path = tmp_path / "mix.toml"
    path.write_text(MIX)
    result = CliRunner().invoke(main, ["compare", str(path), "colocate", "--replications", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("  a ") for line in lines)
    assert any(line.startswith("  b ") for line in lines)


def test_a_failed_attempt_backs_off_and_tries_again():
    retried = summary(
        ONE_ACTIVITY.replace(
            '{ kind = "activity", duration_ms = 0 }',
            '{ kind = "activity", duration_ms = 0, failure_rate = 0.5, max_attempts = 4 }',
        ),
        count=150,
    )
    attempts = retried.calls_per_orchestration["ack_work_item"]
    # 1 + 0.5 + 0.25 + 0.125 attempts expected; failures (all four failed) are 1 in 16
    assert 1.6 < attempts < 2.1, attempts
    assert 0 < retried.failed < 0.15 * (retried.completed + retried.failed)
    # each retry is a backoff timer (100, 200, 400 ms) and a turn on the path
    assert retried.breakdown_ms["timer"] > 50.0
    assert retried.turns_per_orchestration > 2.5


def test_without_failures_a_retried_activity_is_a_plain_one():
    plain = summary(ONE_ACTIVITY)
    never = summary(
        ONE_ACTIVITY.replace(
            '{ kind = "activity", duration_ms = 0 }',
            '{ kind = "activity", duration_ms = 0, max_attempts = 3 }',
        )
    )
    assert never.latencies_ms == plain.latencies_ms and never.failed == 0


def test_a_failed_child_fails_its_parent():
    failing = summary(
        """
[[workload.workflows]]
name = "parent"
weight = 1
steps = [ { kind = "sub_orchestration", workflow = "child" } ]
[[workload.workflows]]
name = "child"
steps = [ { kind = "activity", duration_ms = 0, failure_rate = 0.99 } ]
""",
        count=5,
    )
    assert failing.completed == 0 and failing.failed > 0
