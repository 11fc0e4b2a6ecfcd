"""Workflows as a scenario describes them: named lists of steps, and the traffic mix.

    [[workload.workflows]]
    name = "order"
    weight = 3
    steps = [
      { kind = "activity", duration_ms = 20 },
      { kind = "fanout", n = 3, duration_ms = 30 },
      { kind = "timer", duration_ms = 1000 },
      { kind = "sub_orchestration", workflow = "shipping" },
      { kind = "event", after_ms = 500 },
    ]

Step kinds: `activity` (runs `duration`), `fanout` (`n` branches at once, each one activity of
`duration` or the list of `branch` steps; `n` a whole number or a list of them to draw from),
`timer` (a durable timer of `duration`), `sub_orchestration` (runs the named `workflow` as a child
and waits for it), `event` (waits for an external event the client raises `after` its start; as in
duroxide, an event that arrives before the orchestration has recorded its wait is lost, and the
orchestration waits on until its client gives up) and `continue_as_new` (the workflow starts again
from its first step, `times` times; the last step). The mechanisms, with their sources, are in
docs/reference/workflow-mechanisms.md. A workflow with a `weight` is started by clients in
proportion to it; one without is only run as a sub-orchestration. Without workflows, the workload is
the fan-out of `fanout` activities of `activity` (`durosim.model.scenario.Workload`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from durosim.sim.config import ConfigError
from durosim.sim.dist import Dist

StepKind = Literal["activity", "fanout", "timer", "sub_orchestration", "event", "continue_as_new"]
KINDS: tuple[str, ...] = StepKind.__args__  # type: ignore[attr-defined]

MAX_STEPS = 1000
"""Steps a workflow may run in one execution, branches unrolled (a bound against a typo like
n = 1e6): beyond it a scenario is refused."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a workflow; which keys apply depends on its kind."""

    kind: StepKind
    duration: Dist | None = None
    """activity and fanout: how long each activity runs; timer: the timer's delay."""
    n: int | tuple[int, ...] = 1
    """fanout: the branches, or the choices they are drawn from (uniformly)."""
    branch: tuple[Step, ...] = ()
    """fanout: the steps each branch runs (instead of one activity of `duration`)."""
    workflow: str = ""
    """sub_orchestration: the workflow the child runs."""
    after: Dist | None = None
    """event: when the client raises the event, counted from the orchestration's start."""
    times: int = 1
    """continue_as_new: how many times the workflow starts again."""
    failure_rate: float = 0.0
    """activity: the chance that an attempt fails."""
    max_attempts: int = 1
    """activity: attempts in all (`schedule_activity_with_retry`; backoff 100 ms doubling)."""


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    steps: tuple[Step, ...]
    weight: float | None = None
    """Clients start this workflow in proportion to its weight; unset: only as a child."""


_ALLOWED = {
    "activity": {"duration", "failure_rate", "max_attempts"},
    "fanout": {"n", "duration", "branch"},
    "timer": {"duration"},
    "sub_orchestration": {"workflow"},
    "event": {"after"},
    "continue_as_new": {"times"},
}
_DEFAULTS = Step(kind="activity")


def _where(workflow: str, path: str) -> str:
    return f"workflow {workflow!r}, step {path}"


def _check_steps(workflow: Workflow, steps: tuple[Step, ...], path: str, names: set[str]) -> None:
    for i, step in enumerate(steps, 1):
        here = f"{path}{i}"
        where = _where(workflow.name, here)
        fields = _ALLOWED["fanout"] | _ALLOWED["activity"] | {"workflow", "after", "times"}
        used = {f for f in fields if getattr(step, f) != getattr(_DEFAULTS, f)}
        extra = used - _ALLOWED[step.kind]
        if extra:
            raise ConfigError(
                f"{where}: {', '.join(sorted(extra))} does not apply to kind {step.kind!r} "
                f"(it takes {', '.join(sorted(_ALLOWED[step.kind])) or 'nothing'})"
            )
        for name in ("duration", "after"):
            dist = getattr(step, name)
            if dist is not None and not (math.isfinite(dist.mean) and dist.mean >= 0):
                raise ConfigError(f"{where}: {name} must be a finite time >= 0")
        if step.kind in ("activity", "timer") and step.duration is None:
            raise ConfigError(f"{where}: a {step.kind} needs duration_ms")
        if not (0.0 <= step.failure_rate < 1.0):
            raise ConfigError(f"{where}: failure_rate must be in [0, 1), got {step.failure_rate}")
        if step.max_attempts < 1:
            raise ConfigError(f"{where}: max_attempts must be >= 1, got {step.max_attempts}")
        if step.kind == "fanout":
            choices = step.n if isinstance(step.n, tuple) else (step.n,)
            if not choices or any(c < 1 for c in choices):
                raise ConfigError(f"{where}: n must be >= 1 (or a list of whole numbers >= 1)")
            if step.branch and step.duration is not None:
                raise ConfigError(f"{where}: give a fanout duration_ms or branch steps, not both")
            if not step.branch and step.duration is None:
                raise ConfigError(f"{where}: a fanout needs duration_ms or branch steps")
            if any(s.kind in ("continue_as_new", "event") for s in step.branch):
                raise ConfigError(
                    f"{where}: continue_as_new and event steps cannot be inside a fanout branch"
                )
            _check_steps(workflow, step.branch, f"{here}.", names)
        if step.kind == "sub_orchestration" and step.workflow not in names:
            raise ConfigError(
                f"{where}: unknown workflow {step.workflow!r}; known: {', '.join(sorted(names))}"
            )
        if step.kind == "event" and step.after is None:
            raise ConfigError(f"{where}: an event needs after_ms, when the client raises it")
        if step.kind == "continue_as_new":
            if step.times < 1:
                raise ConfigError(f"{where}: times must be >= 1")
            if i != len(steps) or path:
                raise ConfigError(f"{where}: continue_as_new must be the workflow's last step")
            if _has(steps, "event"):
                raise ConfigError(
                    f"{where}: continue_as_new in a workflow with event steps (each execution "
                    "would need its events raised again)"
                )


def _children(steps: tuple[Step, ...]) -> set[str]:
    out = set()
    for step in steps:
        if step.kind == "sub_orchestration":
            out.add(step.workflow)
        out |= _children(step.branch)
    return out


def _has(steps: tuple[Step, ...], kind: str) -> bool:
    return any(s.kind == kind or _has(s.branch, kind) for s in steps)


def _size(steps: tuple[Step, ...]) -> int:
    total = 0
    for step in steps:
        if step.kind == "fanout":
            most = max(step.n) if isinstance(step.n, tuple) else step.n
            total += most * max(1, _size(step.branch))
        else:
            total += 1
    return total


def check_workflows(workflows: tuple[Workflow, ...]) -> str | None:
    """What is wrong with a set of workflows, or None: unknown names, a sub-orchestration that
    calls itself directly or not, weights, counts and times out of range."""
    if not workflows:
        return None
    try:
        names = [w.name for w in workflows]
        if len(set(names)) != len(names) or not all(names):
            return "workflow names must be unique and not empty"
        known = set(names)
        for workflow in workflows:
            if workflow.weight is not None and not (
                math.isfinite(workflow.weight) and workflow.weight > 0
            ):
                raise ConfigError(
                    f"workflow {workflow.name!r}: weight must be a finite number > 0, "
                    f"got {workflow.weight}"
                )
            if not workflow.steps:
                raise ConfigError(f"workflow {workflow.name!r}: needs at least one step")
            _check_steps(workflow, workflow.steps, "", known)
            if _size(workflow.steps) > MAX_STEPS:
                raise ConfigError(
                    f"workflow {workflow.name!r}: more than {MAX_STEPS} steps in one execution"
                )
        calls = {w.name: _children(w.steps) for w in workflows}
        for workflow in workflows:
            seen, todo = set(), [workflow.name]
            while todo:
                for child in calls[todo.pop()]:
                    if child == workflow.name:
                        raise ConfigError(
                            f"workflow {workflow.name!r}: calls itself as a sub-orchestration "
                            "(directly or through others)"
                        )
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
        for workflow in workflows:
            for child in calls[workflow.name]:
                target = next(w for w in workflows if w.name == child)
                if _has(target.steps, "event"):
                    raise ConfigError(
                        f"workflow {child!r}: an event step in a workflow run as a "
                        "sub-orchestration (the client raises events on the instances it starts)"
                    )
                if _has(target.steps, "continue_as_new"):
                    raise ConfigError(
                        f"workflow {child!r}: continue_as_new in a workflow run as a "
                        "sub-orchestration (duroxide's next execution loses its parent)"
                    )
        if not any(w.weight is not None for w in workflows):
            return "no workflow has a weight: give the ones clients start a weight > 0"
    except ConfigError as err:
        return str(err)
    return None


class Mix:
    """Picks one of several items in proportion to their weights (the traffic mix), the same way
    in the simulator and in `durosim record`."""

    def __init__(self, weights: Iterable[float]):
        values = np.array(list(weights), dtype=float)
        self.cumulative = np.cumsum(values / values.sum())

    def pick(self, rng: np.random.Generator) -> int:
        """An item's index; with one item, no draw."""
        if len(self.cumulative) == 1:
            return 0
        index = int(np.searchsorted(self.cumulative, rng.random(), side="right"))
        return min(index, len(self.cumulative) - 1)


def width(choices: tuple[int, ...], rng: np.random.Generator) -> int:
    """A fanout's width: its `n`, or one of its choices drawn uniformly."""
    if len(choices) == 1:
        return choices[0]
    return int(choices[int(rng.integers(len(choices)))])
