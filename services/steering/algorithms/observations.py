"""Turning stored points into what the optimisers are told.

Every adapter is built from these, and told settled points through them, so the rules
live here once:

* evaluated points are told with their loss; a loss that is missing, not finite, or
  (for several objectives) of the wrong length is not told. A pruned point is evaluated
  with the value it reported when it was stopped, and told like any other;
* failed points are stored with ``failedPointLoss`` as their loss. With
  ``failedPoints: large_loss`` they are told that loss in every objective (negated for
  maximised ones, so it is the worst value); with ``exclude`` they are not told at all;
* unevaluated and pending points are open: told to no one, but shown to the optimisers
  that can take points in flight (Optuna's running trials, Nevergrad's asked-not-told
  candidates);
* points that are not valid for the space (written by an earlier space or by user code)
  are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from services.steering.algorithms.base import Direction, Observation
from shared.domain.models import Point, PointStatus
from shared.searchspace import SearchSpace, validate_point

FailedPoints = Literal["large_loss", "exclude"]
OPEN_STATES = (PointStatus.UNEVALUATED, PointStatus.PENDING)


def resolve_directions(
    configured: Sequence[Direction] | None, history: Sequence[Point]
) -> tuple[Direction, ...]:
    """The configured directions, or ``minimize`` for every objective of the first
    evaluated point's loss (one objective when nothing is evaluated yet)."""
    if configured:
        return tuple(configured)
    minimize: Direction = "minimize"
    for point in history:
        if point.status is PointStatus.EVALUATED and isinstance(point.loss, list) and point.loss:
            return (minimize,) * len(point.loss)
    return (minimize,)


def observe(
    space: SearchSpace,
    history: Sequence[Point],
    *,
    failed_points: FailedPoints,
    directions: tuple[Direction, ...],
) -> tuple[Observation, ...]:
    """The points an optimiser is told or shown, in index order."""
    names = set(space.names)
    out: list[Observation] = []
    for point in sorted(history, key=lambda p: p.index):
        params = {k: v for k, v in point.params.items() if k in names}
        if validate_point(space, params):
            continue
        if point.status in OPEN_STATES:
            out.append(Observation(params, None, point.index))
            continue
        losses = _losses(point, failed_points, directions)
        if losses is not None:
            out.append(Observation(params, losses, point.index))
    return tuple(out)


def _losses(
    point: Point, failed_points: FailedPoints, directions: tuple[Direction, ...]
) -> tuple[float, ...] | None:
    loss = point.loss
    if point.status is PointStatus.FAILED:
        if failed_points == "exclude":
            return None
        worst = loss[0] if isinstance(loss, list) and loss else loss
        if not isinstance(worst, int | float) or not math.isfinite(worst):
            return None
        size = abs(float(worst))
        return tuple(size if d == "minimize" else -size for d in directions)
    values = loss if isinstance(loss, list) else [loss]
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not numbers or len(numbers) != len(values) or not all(map(math.isfinite, numbers)):
        return None
    if len(numbers) != len(directions) and len(directions) > 1:
        return None
    return tuple(numbers)
