"""Drawing new points for a segment: the steering service's entry point to the optimisers.

Every draw rebuilds the configured optimiser from the segment's stored points
(:mod:`services.steering.algorithms`): evaluated points are told with their loss, failed
ones as the task's ``failedPoints`` says, open ones are shown as in flight. Nothing is
kept between draws, so the service is stateless: a restarted process, or another one,
draws exactly what the old one would have drawn from the same history and seed. The
cost is a rebuild per draw, O(stored points) (one sampler call per point for the
replayed Optuna samplers and for Nevergrad).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.steering.algorithms import (
    DrawRequest,
    FailedPoints,
    Observation,
    build_proposer,
    observe,
    resolve_directions,
)
from services.steering.algorithms.observations import OPEN_STATES
from services.steering.logic import segment_seed
from shared.domain.models import Point
from shared.domain.taskconfig import SteeringConfig
from shared.searchspace import SearchSpace, canonical_key, snap_point, validate_point

log = logging.getLogger(__name__)

MAX_DRAWS_PER_POINT = 25
DEFAULT_BUDGET = 100
"""The budget Nevergrad is told when the caller does not pass the task's maxPoints."""


@dataclass(frozen=True)
class Draw:
    """The outcome of one draw.

    ``points`` may be fewer than asked for: when the optimiser keeps proposing points
    that are still open (a small categorical space), the caller should try again once
    results have come in. ``exhausted`` means the algorithm has nothing left to propose
    at all (every grid point is stored): the segment is finished.
    """

    points: list[dict[str, Any]] = field(default_factory=list)
    exhausted: bool = False


def draw(
    space: SearchSpace,
    history: Sequence[Point],
    count: int,
    *,
    steering: SteeringConfig,
    seed: int,
    parallelism: int = 1,
    failed_points: FailedPoints = "large_loss",
    budget: int | None = None,
) -> Draw:
    """Up to ``count`` new points, none equal to a point that is still open.

    A proposal equal to an evaluated or failed point is drawn again, up to
    :data:`MAX_DRAWS_PER_POINT` times, then accepted (a small space may have nothing
    else to offer); one equal to an open point is never accepted: after as many
    attempts the draw returns fewer points.

    ``seed`` is the segment's seed, constant over its life (the per-draw seed is derived
    from it and the number of stored points). ``parallelism`` is how many points may be
    open at once (``max(nParallelEvaluation, nPointsPerIteration)``) and ``budget`` the
    segment's ``maxPoints``; Nevergrad's optimisers choose their strategy from both.
    """
    directions = resolve_directions(steering.directions, history)
    observations = observe(space, history, failed_points=failed_points, directions=directions)
    request = DrawRequest(
        space=space,
        algorithm=steering.algorithm,
        args=steering.args,
        observations=observations,
        stored=tuple(dict(p.params) for p in history),
        directions=directions,
        seed=seed,
        draw_seed=segment_seed(seed, len(history)),
        parallelism=max(parallelism, 1),
        budget=budget or DEFAULT_BUDGET,
    )
    proposer = build_proposer(steering.library, request)
    open_keys = {p.key for p in history if p.status in OPEN_STATES}
    stored: dict[str, Observation | None] = dict.fromkeys(
        (p.key for p in history if p.status not in OPEN_STATES), None
    )
    stored.update((canonical_key(o.params), o) for o in observations if not o.is_open)
    new: list[dict[str, Any]] = []
    for _ in range(count):
        for attempt in range(MAX_DRAWS_PER_POINT):
            raw = proposer.ask()
            if raw is None:
                return Draw(new, exhausted=True)
            params = snap_point(space, raw)
            key = canonical_key(params)
            problems = validate_point(space, params)
            if problems:
                log.error("%s proposed an invalid point: %s", steering.algorithm, problems)
            elif key in open_keys:
                pass
            elif key not in stored or attempt == MAX_DRAWS_PER_POINT - 1:
                open_keys.add(key)
                new.append(params)
                break
            proposer.discard(stored.get(key))
        else:
            break
    return Draw(new)
