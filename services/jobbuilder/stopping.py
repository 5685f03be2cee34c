"""Stopping rules that end a task before its plan is used up (docs/architecture.md,
"How a task ends"): ``targetLoss``, ``stopAfterNoImprovement`` and ``maxWallTime``.

Pure decisions over stored state (the task's start and its evaluated points in the
order they were evaluated), so the job builder checks them in every pass, not only when
a result arrives, and a restart that missed the result that met a rule still ends the
task. They apply to single-objective tasks; the direction of the loss is respected (a
maximised loss has reached ``targetLoss`` when it is at least the target).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.domain.taskconfig import Direction, TaskConfig


@dataclass(frozen=True)
class Evaluated:
    """One evaluated point of the task, as the rules see it."""

    point_id: str
    loss: float


@dataclass(frozen=True)
class Stop:
    reason: str
    evaluated: int
    """Points evaluated when the rule was met (0: the task fails, nothing to show)."""


def has_rules(config: TaskConfig) -> bool:
    return (
        config.maxWallTime is not None
        or config.targetLoss is not None
        or config.stopAfterNoImprovement is not None
    )


def _better(a: float, b: float, direction: Direction) -> bool:
    return a < b if direction == "minimize" else a > b


def _best(points: Sequence[Evaluated], direction: Direction) -> Evaluated:
    best = points[0]
    for point in points[1:]:
        if _better(point.loss, best.loss, direction):
            best = point
    return best


def since_improvement(points: Sequence[Evaluated], direction: Direction) -> int:
    """Points evaluated after the last one that bettered the best so far."""
    best: float | None = None
    count = 0
    for point in points:
        if best is None or _better(point.loss, best, direction):
            best, count = point.loss, 0
        else:
            count += 1
    return count


def _show(point: Evaluated) -> str:
    return f"best loss {point.loss:g} (point {point.point_id})"


def stop_reason(
    config: TaskConfig, *, started: datetime, now: datetime, evaluated: Sequence[Evaluated]
) -> Stop | None:
    """The first rule the task meets, in the order target, no improvement, wall time;
    None while it meets none. ``evaluated`` is in evaluation order."""
    direction: Direction = (config.steering.directions or ["minimize"])[0]
    count = len(evaluated)
    after = f"after {count} evaluated point{'s' if count != 1 else ''}"
    if evaluated:
        best = _best(evaluated, direction)
        target = config.targetLoss
        if target is not None and not _better(target, best.loss, direction):
            return Stop(f"targetLoss {target:g} reached: {_show(best)} {after}", count)
        patience = config.stopAfterNoImprovement
        if patience is not None and since_improvement(evaluated, direction) >= patience:
            return Stop(
                f"stopAfterNoImprovement: no better loss in the last {patience} evaluated "
                f"points; {_show(best)} {after}",
                count,
            )
    limit = config.maxWallTime
    elapsed = (now - started).total_seconds()
    if limit is not None and elapsed >= limit:
        if not evaluated:
            return Stop(
                f"maxWallTime ({limit:g} s) reached after {elapsed:.0f} s before any point "
                "was evaluated",
                0,
            )
        return Stop(
            f"maxWallTime ({limit:g} s) reached after {elapsed:.0f} s: "
            f"{_show(_best(evaluated, direction))} {after}",
            count,
        )
    return None
