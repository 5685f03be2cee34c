"""Drawing new points for a segment: the steering service's entry point to the optimisers.

A :class:`SegmentOptimizer` is built from a segment's stored points (the *rebuild*, see
:mod:`services.steering.algorithms`): evaluated points are told with their loss, failed
ones as the task's ``failedPoints`` says, open ones are shown as in flight. From then on
it is kept up to date by deltas: :meth:`SegmentOptimizer.settle` tells it the points
that settled since, and :meth:`SegmentOptimizer.draw` asks it for new ones, which it
counts as open under the indices they will be stored at. Built from the same history
and seed, two optimisers propose the same points, so a restarted steering process, or
another one taking the segment over, goes on where the last one was; and for the
samplers that hold no state between draws (TPE, GP, random) a kept optimiser draws
exactly what a rebuilt one would.

:func:`draw` is the stateless form (rebuild, draw once, throw away), for tools and
tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.steering.algorithms import (
    Direction,
    DrawRequest,
    FailedPoints,
    Observation,
    build_proposer,
    observe,
    resolve_directions,
)
from services.steering.algorithms.observations import OPEN_STATES
from services.steering.algorithms.pbt import PbtProposer
from services.steering.logic import segment_seed
from shared.domain.models import Point, PointStatus
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
    parents: list[int | None] = field(default_factory=list)
    """Per point of ``points`` (when the algorithm has lineage, as ``pbt``): the index
    of the stored point whose latest checkpoint it starts from, or None."""


class StaleOptimizerError(Exception):
    """The stored points no longer match what the optimiser was built from (a point it
    did not propose, a change of objectives): rebuild it."""


class SegmentOptimizer:
    """One segment's optimiser and what it knows of the stored points.

    ``seed`` is the segment's seed, constant over its life (the per-draw seed is derived
    from it and the number of stored points). ``parallelism`` is how many points may be
    open at once (``max(nParallelEvaluation, nPointsPerIteration)``) and ``budget`` the
    segment's ``maxPoints``; Nevergrad's optimisers choose their strategy from both.

    Not thread-safe: one draw or settle at a time (the steering service holds a lock
    per task around them).
    """

    def __init__(
        self,
        space: SearchSpace,
        history: Sequence[Point],
        *,
        steering: SteeringConfig,
        seed: int,
        parallelism: int = 1,
        failed_points: FailedPoints = "large_loss",
        budget: int | None = None,
        warm: Sequence[Observation] = (),
    ) -> None:
        """``warm`` holds points of earlier tasks (:mod:`services.steering.warmstart`),
        told before the segment's own points; they are not stored points, and a proposal
        equal to one is drawn again as one equal to an evaluated point is."""
        self.space = space
        self.steering = steering
        self.seed = seed
        self.failed_points: FailedPoints = failed_points
        self.directions: tuple[Direction, ...] = resolve_directions(steering.directions, history)
        self._directions_fixed = bool(steering.directions) or any(
            p.status is PointStatus.EVALUATED for p in history
        )
        observations = observe(
            space, history, failed_points=failed_points, directions=self.directions
        )
        request = DrawRequest(
            space=space,
            algorithm=steering.algorithm,
            args=steering.args,
            observations=(*warm, *observations),
            stored=tuple(dict(p.params) for p in history),
            directions=self.directions,
            seed=seed,
            draw_seed=segment_seed(seed, len(history)),
            parallelism=max(parallelism, 1),
            budget=budget or DEFAULT_BUDGET,
        )
        self._proposer = build_proposer(steering.library, request)
        self.count = len(history)
        """Points stored so far; the next one gets this index."""
        self._open: dict[int, str] = {p.index: p.key for p in history if p.status in OPEN_STATES}
        self._open_keys: dict[str, int] = {key: index for index, key in self._open.items()}
        self._settled: dict[str, Observation | None] = dict.fromkeys(
            (p.key for p in history if p.status not in OPEN_STATES), None
        )
        self._settled.update((canonical_key(o.params), o) for o in observations if not o.is_open)
        # a warm-start point is drawn again like an evaluated one, unless the task has it
        for known in warm:
            self._settled.setdefault(canonical_key(known.params), known)

    @property
    def open_indices(self) -> list[int]:
        return sorted(self._open)

    def settle(self, changed: Iterable[Point]) -> None:
        """Tell the optimiser about points that settled since it last looked.

        ``changed`` holds the segment's points that are new (index ``>= count``) or were
        open and no longer are; points still open, or settled already, are ignored.
        Raises :class:`StaleOptimizerError` when the optimiser cannot follow: a point it
        did not propose, or a multi-objective loss where one objective was assumed.
        """
        for point in sorted(changed, key=lambda p: p.index):
            if point.index >= self.count:
                raise StaleOptimizerError(f"point {point.index} was stored by someone else")
            if point.index not in self._open or point.status in OPEN_STATES:
                continue
            if not self._directions_fixed and point.status is PointStatus.EVALUATED:
                if resolve_directions(None, [point]) != self.directions:
                    raise StaleOptimizerError("the first loss sets the number of objectives")
                self._directions_fixed = True
            found = observe(
                self.space, [point], failed_points=self.failed_points, directions=self.directions
            )
            observation = found[0] if found else None
            self._proposer.tell(point.index, observation)
            key = self._open.pop(point.index)
            self._open_keys.pop(key, None)
            self._settled[key] = observation

    def draw(self, count: int) -> Draw:
        """Up to ``count`` new points, none equal to a point that is still open; they
        are counted as stored, at indices ``count``, ``count + 1``, ... (if the caller
        cannot store them, it must throw this optimiser away).

        A proposal equal to an evaluated or failed point is drawn again, up to
        :data:`MAX_DRAWS_PER_POINT` times, then accepted (a small space may have nothing
        else to offer); one equal to an open point is never accepted: after as many
        attempts the draw returns fewer points.
        """
        self._proposer.prepare(segment_seed(self.seed, self.count))
        if isinstance(self._proposer, PbtProposer):
            return self._draw_lineage(self._proposer, count)
        new: list[dict[str, Any]] = []
        for _ in range(count):
            for attempt in range(MAX_DRAWS_PER_POINT):
                raw = self._proposer.ask()
                if raw is None:
                    return Draw(new, exhausted=True)
                params = snap_point(self.space, raw)
                key = canonical_key(params)
                problems = validate_point(self.space, params)
                if problems:
                    log.error("%s proposed an invalid point: %s", self.steering.algorithm, problems)
                elif key in self._open_keys:
                    self._proposer.discard(None, self._open_keys[key])
                    continue
                elif key not in self._settled or attempt == MAX_DRAWS_PER_POINT - 1:
                    self._accept(key)
                    new.append(params)
                    break
                self._proposer.discard(self._settled.get(key))
            else:
                break
        return Draw(new)

    def _accept(self, key: str) -> None:
        self._proposer.accept(self.count)
        self._open[self.count] = key
        self._open_keys[key] = self.count
        self.count += 1

    def _draw_lineage(self, proposer: PbtProposer, count: int) -> Draw:
        """A population's members: equal parameters are no duplicates (a member that
        continues keeps its own), and a proposer waiting for its generation to settle
        is not exhausted."""
        new: list[dict[str, Any]] = []
        parents: list[int | None] = []
        for _ in range(count):
            raw = proposer.ask()
            if raw is None:
                return Draw(new, exhausted=not proposer.waiting, parents=parents)
            params = snap_point(self.space, raw)
            problems = validate_point(self.space, params)
            if problems:
                log.error("%s proposed an invalid point: %s", self.steering.algorithm, problems)
                break
            parents.append(proposer.parent())
            self._accept(canonical_key(params))
            new.append(params)
        return Draw(new, parents=parents)


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
    """Rebuild the segment's optimiser from ``history`` and draw up to ``count`` points
    (see :meth:`SegmentOptimizer.draw`)."""
    optimizer = SegmentOptimizer(
        space,
        history,
        steering=steering,
        seed=seed,
        parallelism=parallelism,
        failed_points=failed_points,
        budget=budget,
    )
    return optimizer.draw(count)
