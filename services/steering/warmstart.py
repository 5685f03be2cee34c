"""Warm start: the points of earlier tasks told to a new task's optimiser before it draws.

``warmStartFrom: [task ids]`` names earlier tasks of the same owner. Their evaluated
points (and failed ones, as :mod:`.algorithms.observations` tells failures) are told
to the new segment's optimiser when it is built, ahead of its own points; they are not
stored in the new task, so they do not count against its ``maxPoints``. A point is used
only if it is a point of the new space as it stands: the same names (in a conditional
space, the names active for it) and every value inside the new bounds or categories.
The others are skipped and counted by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.steering.algorithms import Direction, FailedPoints, Observation, observe
from shared.domain.models import Point, PointStatus, Task, WarmStartSummary
from shared.searchspace import SearchSpace, active_names, validate_point

NOT_YOURS = "the task belongs to another owner"
UNKNOWN_TASK = "no such task"
NOT_SETTLED = "not evaluated"
OTHER_NAMES = "different parameter names"
OUT_OF_BOUNDS = "values outside the new space"


@dataclass
class WarmStart:
    """What a new segment is told, and what was skipped, by reason."""

    observations: list[Observation] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def told(self) -> int:
        return len(self.observations)

    def summary(self) -> WarmStartSummary:
        return WarmStartSummary(told=self.told, skipped=dict(self.skipped))


def refusal(task: Task | None, owner: str) -> str | None:
    """Why the points of ``task`` may not warm-start a task of ``owner``."""
    if task is None:
        return UNKNOWN_TASK
    if task.owner != owner:
        return NOT_YOURS
    return None


def warm_start(
    space: SearchSpace,
    earlier: Sequence[Point],
    *,
    failed_points: FailedPoints,
    directions: tuple[Direction, ...],
) -> WarmStart:
    """The observations of ``earlier`` (points of earlier tasks) that fit ``space``."""
    result = WarmStart()
    fitting: list[Point] = []
    for point in earlier:
        reason = _misfit(space, point)
        if reason is None:
            fitting.append(point)
        else:
            result.skipped[reason] += 1
    told = observe(space, fitting, failed_points=failed_points, directions=directions)
    result.observations = [Observation(o.params, o.losses) for o in told]
    if len(told) < len(fitting):  # failures excluded, losses that cannot be told
        result.skipped[NOT_SETTLED] += len(fitting) - len(told)
    return result


def _misfit(space: SearchSpace, point: Point) -> str | None:
    if point.status not in (PointStatus.EVALUATED, PointStatus.FAILED):
        return NOT_SETTLED
    names = active_names(space, point.params) if space.conditional else set(space.names)
    if set(point.params) != names:
        return OTHER_NAMES
    if validate_point(space, point.params):
        return OUT_OF_BOUNDS
    return None
