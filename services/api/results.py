"""What a site's reported result means for a point: the loss must have the task's shape.

A site cannot know how many objectives a task has, so the api checks: a single-objective
task takes a number (a list of one number is read as that number), a task with N
``steering.directions`` a list of N numbers. A loss of another shape is recorded as a
failed evaluation of that point with the reason, so the job ends, nothing is lost, the
point is retried like any failure and the user reads why; it never reaches an optimiser
or the task's best point.
"""

from __future__ import annotations

from shared.domain.models import PointOutcome
from shared.domain.taskconfig import TaskConfig
from shared.edge_api import PointResult


def objective_count(config: TaskConfig) -> int:
    return len(config.steering.directions or ()) or 1


def outcome_of(result: PointResult, objectives: int) -> PointOutcome:
    outcome = PointOutcome(**result.model_dump())
    loss = outcome.loss
    if outcome.status != 0 or loss is None:
        return outcome
    if objectives == 1 and isinstance(loss, list) and len(loss) == 1:
        return outcome.model_copy(update={"loss": loss[0]})
    count = len(loss) if isinstance(loss, list) else 1
    if count == objectives and (objectives == 1) != isinstance(loss, list):
        return outcome
    wanted = "a number" if objectives == 1 else f"a list of {objectives} numbers"
    got = f"a list of {count} numbers" if isinstance(loss, list) else "a number"
    return outcome.model_copy(
        update={
            "loss": None,
            "status": 1,
            "message": f"loss: the task has {objectives} objective"
            f"{'s' if objectives > 1 else ''} and takes {wanted}, the evaluation reported {got}",
        }
    )
