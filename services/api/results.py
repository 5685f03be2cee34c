"""What a site's reported result means for a point: its metrics checked, its loss of the
task's shape, or computed from the metrics as the task defines it.

A site cannot know how many objectives a task has, so the api checks: a single-objective
task takes a number (a list of one number is read as that number), a task with N
``steering.directions`` a list of N numbers. A task with ``figureOfMerit`` or
``objectives`` computes its loss from the reported ``metrics`` instead
(:mod:`shared.domain.metrics`), whatever the payload gave as ``loss``. Metrics that
cannot be stored (not finite numbers, too many, bad names), a missing metric the task
needs, or a loss of another shape are recorded as a failed evaluation of that point with
the reason, so the job ends, nothing is lost, the point is retried like any failure and
the user reads why; it never reaches an optimiser or the task's best point.
"""

from __future__ import annotations

from shared.domain.metrics import MetricsError, check_metrics, figure_of_merit, objective_losses
from shared.domain.models import Loss, PointOutcome
from shared.domain.taskconfig import TaskConfig
from shared.edge_api import PointResult


def objective_count(config: TaskConfig) -> int:
    return len(config.steering.directions or ()) or 1


def _failed(outcome: PointOutcome, message: str) -> PointOutcome:
    return outcome.model_copy(update={"loss": None, "status": 1, "message": message})


def outcome_of(result: PointResult, config: TaskConfig) -> PointOutcome:
    raw = result.model_dump(exclude={"metrics"})
    outcome = PointOutcome(**raw)
    if outcome.status != 0:
        return outcome
    try:
        metrics = check_metrics(result.metrics)
        outcome = outcome.model_copy(update={"metrics": metrics})
        if config.figureOfMerit is not None:
            return outcome.model_copy(
                update={"loss": figure_of_merit(config.figureOfMerit, metrics)}
            )
        if config.objectives is not None:
            losses = objective_losses(config.objectives, metrics)
            loss: Loss = losses[0] if len(losses) == 1 else losses
            return outcome.model_copy(update={"loss": loss})
    except MetricsError as exc:
        return _failed(outcome, str(exc))
    return _shaped(outcome, objective_count(config))


def _shaped(outcome: PointOutcome, objectives: int) -> PointOutcome:
    loss = outcome.loss
    if loss is None:
        return _failed(
            outcome,
            'the result has no "loss", and the task defines no figureOfMerit or objectives '
            "to compute one from its metrics",
        )
    if objectives == 1 and isinstance(loss, list) and len(loss) == 1:
        return outcome.model_copy(update={"loss": loss[0]})
    count = len(loss) if isinstance(loss, list) else 1
    if count == objectives and (objectives == 1) != isinstance(loss, list):
        return outcome
    wanted = "a number" if objectives == 1 else f"a list of {objectives} numbers"
    got = f"a list of {count} numbers" if isinstance(loss, list) else "a number"
    return _failed(
        outcome,
        f"loss: the task has {objectives} objective"
        f"{'s' if objectives > 1 else ''} and takes {wanted}, the evaluation reported {got}",
    )
