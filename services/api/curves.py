"""Intermediate values of a point and the pruner's decision on them, for the edge
relay (batch points) and the online report (study trials) alike.

Each value is stored once per step; the pruner is asked only when a value extends the
curve (a repeated or out-of-order step decides nothing). When the pruner says prune,
the point becomes ``evaluated`` with the value it just reported and ``pruned_step``,
counted for the attempt that reported it; ``point.pruned`` tells whoever listens, and
``point.evaluated`` lets steering tell its optimiser at once. The job still running the
point is stopped through the job's next heartbeat reply (see the edge router).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from services.api.pruning import decide
from services.context import Context
from shared.domain.models import Point, Task
from shared.messages import PointEvaluated, PointPruned

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrunerChoice:
    """Which pruner judges a curve, and the study it is judged in."""

    name: str
    args: dict[str, Any]
    direction: Literal["minimize", "maximize"]
    study_name: str


@dataclass(frozen=True)
class CurveOutcome:
    stored: int
    """How many of the values were new."""
    pruned_step: int | None
    """The step at which the point was pruned (by this call or an earlier one)."""


def task_pruner(task: Task, segment: str) -> PrunerChoice:
    """A batch task's pruner, judging each segment's points among themselves."""
    config = task.config
    directions = config.steering.directions or ["minimize"]
    return PrunerChoice(
        name=config.pruner.name,
        args=config.pruner.args,
        direction=directions[0],
        study_name=f"{task.id}.{segment}",
    )


async def record_curve(
    ctx: Context,
    point: Point,
    values: Sequence[tuple[int, float]],
    pruner: PrunerChoice,
    *,
    job_id: str | None,
) -> CurveOutcome:
    """Store ``values`` (step, value) of ``point`` in order, asking the pruner after
    each one that extends the curve, and prune the point when it says so.

    ``job_id`` is the attempt reporting (None for an online trial): a value from an
    attempt that no longer owns the point is not stored.
    """
    curves = ctx.store.curves
    stored = 0
    for step, value in values:
        if not await curves.report(point.id, step, value, job_id):
            continue
        stored += 1
        if pruner.name == "NopPruner":
            continue
        trials = await curves.trials(point.task_id, point.segment)
        mine = next((t for t in trials if t.point.id == point.id), None)
        if mine is None or step != max(mine.intermediate):
            continue
        decision = await asyncio.to_thread(
            decide,
            pruner.name,
            pruner.args,
            pruner.direction,
            trials,
            point.index,
            study_name=pruner.study_name,
        )
        if decision.attrs:
            await curves.remember(point.id, decision.attrs, job_id)
        if decision.prune and await curves.prune(point.id, step, value, job_id):
            ctx.metrics.points_pruned.inc()
            log.info("point %s pruned at step %d (value %g)", point.id, step, value)
            await _announce(ctx, point, step, value, job_id)
            return CurveOutcome(stored=stored, pruned_step=step)
    current = await ctx.store.points.get(point.id)
    return CurveOutcome(stored=stored, pruned_step=current.pruned_step if current else None)


async def _announce(
    ctx: Context, point: Point, step: int, value: float, job_id: str | None
) -> None:
    await ctx.bus.publish(
        PointPruned(
            task_id=point.task_id,
            segment=point.segment,
            point_id=point.id,
            step=step,
            value=value,
            job_id=job_id,
        )
    )
    if job_id is not None:  # steering tops up batch tasks only
        await ctx.bus.publish(
            PointEvaluated(
                task_id=point.task_id, segment=point.segment, point_id=point.id, loss=value
            )
        )
