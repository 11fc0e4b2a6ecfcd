"""A scenario's workflows on the real runtime, for `durosim record --workload SCENARIO.toml`.

Each workflow becomes one orchestration, `wf-NAME`, a generator that yields the Python SDK's tasks
for its steps in order (docs/reference/workflow-mechanisms.md, the SDK table): an activity is
`schedule_activity("Sleep", ms)`, a fanout `all(...)` of one task per branch, a timer
`schedule_timer(ms)`, a sub-orchestration `schedule_sub_orchestration("wf-CHILD", input)`, an
event `wait_for_event("eN")` (the driver raises it `after` the start) and continue-as-new
`continue_as_new(input)`. An orchestration must replay the same way every turn, so everything
random (durations, a fanout's width) is drawn by the client before the start and travels in the
input: one plan per execution, a child's plan inside its parent's.

Every activity's input carries `id`, its number in the order its execution schedules them (the
same on every replay), so `durosim.lab.executions` can tell a repeated execution from another
activity of the same duration; a retried attempt keeps its number, so it counts as a repeat.

The SDK's `all` takes single tasks ("nested join/select inside join is not supported"), so a
fanout branch here is one step (an activity, a timer or a sub-orchestration); a branch of
several steps is refused before anything starts.
"""

from __future__ import annotations

import itertools
import random
import time

from durosim.model.scenario import Scenario
from durosim.model.workflows import Mix, Step, Workflow, width
from durosim.sim.errors import InputError
from durosim.sim.rng import Streams

ACTIVITY = "Sleep"
BRANCH_KINDS = ("activity", "timer", "sub_orchestration")


def orchestration_name(workflow: str) -> str:
    return f"wf-{workflow}"


def check_recordable(workflows: tuple[Workflow, ...]) -> None:
    """Refuse what the Python SDK cannot run."""
    for workflow in workflows:
        for i, step in enumerate(workflow.steps, 1):
            if (
                step.kind == "fanout"
                and step.branch
                and (len(step.branch) != 1 or step.branch[0].kind not in BRANCH_KINDS)
            ):
                raise InputError(
                    f"workflow {workflow.name!r}, step {i}: the Python SDK's all() takes one "
                    f"task per branch ({', '.join(BRANCH_KINDS)}); make a branch of several "
                    "steps a sub_orchestration"
                )


class Planner:
    """Draws what one orchestration will do, before it starts: the same named random streams
    the simulator uses for each step (seeded by `seed`)."""

    def __init__(self, scenario: Scenario, seed: int):
        self.workflows = {w.name: w for w in scenario.workload.workflows}
        self.streams = Streams(seed, 0)
        self.samplers: dict[str, object] = {}
        self.choices = self.streams["workload.choices"]
        self.started = [w for w in scenario.workload.workflows if w.weight is not None]
        self.weights = Mix(w.weight for w in self.started)
        self.mix = self.streams["workload.mix"]

    def choose(self) -> Workflow:
        return self.started[self.weights.pick(self.mix)]

    def _ms(self, dist, name: str) -> float:
        sampler = self.samplers.get(name)
        if sampler is None:
            sampler = self.samplers[name] = dist.sampler(self.streams[f"workflow.{name}"])
        return round(sampler() * 1000.0, 3)

    def input(self, workflow: Workflow) -> dict:
        """The orchestration's input: its name and one plan per execution."""
        executions = 1 + sum(s.times for s in workflow.steps if s.kind == "continue_as_new")
        return {
            "workflow": workflow.name,
            "k": 0,
            "executions": [self._plan(workflow) for _ in range(executions)],
        }

    def _plan(self, workflow: Workflow) -> list:
        return [
            self._step(step, f"{workflow.name}.{i + 1}") for i, step in enumerate(workflow.steps)
        ]

    def _step(self, step: Step, name: str) -> dict:
        if step.kind == "activity" and (step.failure_rate or step.max_attempts > 1):
            return {
                "ms": self._ms(step.duration, f"{name}.duration"),
                "failure_rate": step.failure_rate,
                "max_attempts": step.max_attempts,
            }
        if step.kind in ("activity", "timer"):
            return {"ms": self._ms(step.duration, f"{name}.duration")}
        if step.kind == "fanout":
            n = width(step.n if isinstance(step.n, tuple) else (step.n,), self.choices)
            if not step.branch:
                return {
                    "items": [{"ms": self._ms(step.duration, f"{name}.duration")} for _ in range(n)]
                }
            inner = step.branch[0]
            return {"items": [self._step(inner, f"{name}.1") for _ in range(n)]}
        if step.kind == "sub_orchestration":
            return {"child": self.input(self.workflows[step.workflow])}
        if step.kind == "event":
            return {"after_ms": self._ms(step.after, f"{name}.after")}
        return {}

    def events(self, data: dict) -> list[tuple[str, float]]:
        """(event name, seconds after the start) the client raises for this input."""
        workflow = self.workflows[data["workflow"]]
        plan = data["executions"][0]
        return [
            (f"e{i}", p["after_ms"] / 1000.0)
            for i, (step, p) in enumerate(zip(workflow.steps, plan))
            if step.kind == "event"
        ]


def register(runtime, workflows: tuple[Workflow, ...], count=None) -> None:
    """Register one orchestration per workflow and the activity they run; `count(instance,
    execution, id)` is called as each activity begins (`durosim.lab.executions`)."""

    draw = random.Random()

    def sleep(ctx, job):
        """Run `ms`; with a failure rate, fail that share of the attempts (an activity need not
        replay deterministically, an orchestration must)."""
        if count is not None:
            count(ctx.instance_id, ctx.execution_id, job["id"])
        if job["ms"] > 0:
            time.sleep(job["ms"] / 1000.0)
        if draw.random() < job.get("failure_rate", 0.0):
            raise RuntimeError("the activity failed (failure_rate)")
        return job["ms"]

    runtime.register_activity(ACTIVITY, sleep)
    by_name = {w.name: w for w in workflows}

    def task(ctx, step: Step, plan: dict, ids):
        if step.kind == "activity" and "failure_rate" in plan:
            job = {**plan, "id": next(ids)}
            if plan["max_attempts"] > 1:
                retry = {"max_attempts": plan["max_attempts"], "backoff": "exponential"}
                return ctx.schedule_activity_with_retry(ACTIVITY, job, retry)
            return ctx.schedule_activity(ACTIVITY, job)
        if step.kind == "activity":
            return ctx.schedule_activity(ACTIVITY, {"ms": plan["ms"], "id": next(ids)})
        if step.kind == "timer":
            return ctx.schedule_timer(max(0, round(plan["ms"])))
        return ctx.schedule_sub_orchestration(orchestration_name(step.workflow), plan["child"])

    def run(ctx, data):
        workflow = by_name[data["workflow"]]
        k = data["k"]
        plan = data["executions"][k]
        ids = itertools.count()  # replays schedule in the same order: the same numbers
        for i, (step, p) in enumerate(zip(workflow.steps, plan)):
            kind = step.kind
            if kind == "fanout":
                if step.branch:
                    yield ctx.all([task(ctx, step.branch[0], item, ids) for item in p["items"]])
                else:
                    yield ctx.all(
                        [
                            ctx.schedule_activity(ACTIVITY, {"ms": it["ms"], "id": next(ids)})
                            for it in p["items"]
                        ]
                    )
            elif kind == "event":
                yield ctx.wait_for_event(f"e{i}")
            elif kind == "continue_as_new":
                if k < step.times:
                    yield ctx.continue_as_new({**data, "k": k + 1})
                    return None
            else:
                yield task(ctx, step, p, ids)
        return workflow.name

    for workflow in workflows:
        runtime.register_orchestration(orchestration_name(workflow.name), run)
