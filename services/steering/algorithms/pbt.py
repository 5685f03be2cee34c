"""Population-based training: a population trained in generations, through checkpoints.

Offered as ``{"algorithm": "pbt", "args": {"population": 8, "generations": 4}}``
(library ``optuna``, the default, like ``grid``: written here, since neither library has
it). The segment's points form ``generations`` generations of ``population`` points
each, point ``i`` being member ``i % population`` of generation ``i // population``.
Generation 0 is drawn at random from the space's priors. Each later generation is
planned once the whole previous one has settled (the draw returns nothing meanwhile,
which is not the end of the search), by truncation selection (Jaderberg et al., 2017):

* the members ranked in the worst ``truncation`` fraction (at least one) *exploit*:
  each copies a member drawn from the best fraction, its checkpoint and its
  hyperparameters, then *explores*: every hyperparameter is drawn afresh from its prior
  with probability ``resample``, else a numeric one is multiplied or divided by
  ``perturbation`` (kept in bounds, rounded for integers) and a categorical one kept;
* every other member continues from its own checkpoint with its own hyperparameters.

Either way the new point names the point whose checkpoint it starts from
(:meth:`PbtProposer.parent`): the steering service records it as the point's
``parent`` and hands the new point that point's latest checkpoint, which the site
restores before the payload runs, at any site. So the payload trains a few epochs per
job, resuming from what it finds in its checkPointToSave files, and reports its loss
after them; failed points rank last (with ``failedPoints: exclude`` too).

Everything is a function of the seed and the losses of the previous generations, so a
rebuilt proposer plans what the first one did. Flat spaces only (a conditional space
is refused: a perturbed parent would activate dimensions the checkpoint never saw),
single objective (the first one is ranked).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from services.steering.algorithms.base import (
    DrawRequest,
    Observation,
    SteeringUnavailable,
    first_loss,
)
from shared.searchspace import Dimension, snap_point

CONDITIONAL_PBT = (
    "pbt needs a search space without conditions (when, oneOf, repeat): a member's "
    "hyperparameters are perturbed one by one and its checkpoint fits one set of them"
)
WORST = math.inf
"""The rank value of a failed or dropped point."""


@dataclass(frozen=True)
class PbtArgs:
    """The ``args`` of the pbt algorithm (``generations`` defaults to the budget, i.e.
    maxPoints, divided by ``population``, rounded up)."""

    population: int = 8
    generations: int | None = None
    perturbation: float = 1.2
    resample: float = 0.25
    truncation: float = 0.25

    def __post_init__(self) -> None:
        _whole(self.population, "population", 2)
        if self.generations is not None:
            _whole(self.generations, "generations", 1)
        if not _number(self.perturbation) or self.perturbation <= 1:
            raise ValueError(f"perturbation must be a number > 1, got {self.perturbation!r}")
        if not _number(self.resample) or not 0 <= self.resample <= 1:
            raise ValueError(f"resample must be a probability in [0, 1], got {self.resample!r}")
        if not _number(self.truncation) or not 0 < self.truncation <= 0.5:
            raise ValueError(f"truncation must be in (0, 0.5], got {self.truncation!r}")


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _whole(value: object, name: str, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")


@dataclass(frozen=True)
class Member:
    params: dict[str, Any]
    parent: int | None
    """The index of the point whose checkpoint this member starts from."""


class PbtProposer:
    def __init__(self, request: DrawRequest) -> None:
        try:
            self.args = PbtArgs(**dict(request.args))  # type: ignore[arg-type]
        except TypeError as exc:
            raise ValueError(str(exc)) from exc
        if request.space.conditional:
            raise SteeringUnavailable(CONDITIONAL_PBT)
        self.space = request.space
        self.seed = request.seed
        self.direction = request.directions[0]
        size = self.args.population
        self.generations = self.args.generations or max(1, math.ceil(request.budget / size))
        self.total = size * self.generations
        self._next = len(request.stored)
        """The index the next proposal gets."""
        self._settled: dict[int, float] = {}
        stored_indices = set(range(len(request.stored)))
        for observation in request.observations:
            if observation.index < 0:
                continue  # a warm-start point: not a member of the population
            stored_indices.discard(observation.index)
            if not observation.is_open:
                self._settled[observation.index] = first_loss(observation, self.direction)
        for index in stored_indices:  # failed points the task excludes: settled, worst
            self._settled[index] = WORST
        self._plans: dict[int, list[Member]] = {}
        self._last: Member | None = None

    # -- the Proposer protocol ----------------------------------------------------------

    def prepare(self, draw_seed: int) -> None:
        """The plan depends on the segment's seed only."""

    def ask(self) -> dict[str, Any] | None:
        """The next member, or None: at the end of the last generation, or while the
        previous generation is still running (:meth:`waiting` tells which)."""
        self._last = None
        if self._next >= self.total:
            return None
        plan = self._plan(self._next // self.args.population)
        if plan is None:
            return None
        self._last = plan[self._next % self.args.population]
        return dict(self._last.params)

    def accept(self, index: int) -> None:
        self._next = index + 1

    def discard(self, known: Observation | None, open_index: int | None = None) -> None:
        """Nothing to do: the next ask proposes the same member again."""

    def tell(self, index: int, observation: Observation | None) -> None:
        if observation is None or observation.is_open:
            self._settled[index] = WORST
        else:
            self._settled[index] = first_loss(observation, self.direction)

    # -- lineage ------------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Whether the last ask returned None only until a generation has settled."""
        return self._last is None and self._next < self.total

    def parent(self) -> int | None:
        """The point whose checkpoint the last proposal starts from."""
        return None if self._last is None else self._last.parent

    # -- planning -----------------------------------------------------------------------

    def _plan(self, generation: int) -> list[Member] | None:
        if generation in self._plans:
            return self._plans[generation]
        size = self.args.population
        rng = random.Random(f"pbt:{self.seed}:{generation}")  # noqa: S311 (seeded plan)
        if generation == 0:
            plan = [Member(self._sample(rng), None) for _ in range(size)]
        else:
            first = (generation - 1) * size
            previous = self._plan(generation - 1)
            if previous is None or any(i not in self._settled for i in range(first, first + size)):
                return None
            plan = self._next_generation(rng, previous, first)
        self._plans[generation] = plan
        return plan

    def _next_generation(
        self, rng: random.Random, previous: list[Member], first: int
    ) -> list[Member]:
        size = self.args.population
        ranked = sorted(range(size), key=lambda m: (self._settled[first + m], m))
        cut = max(1, math.floor(self.args.truncation * size))
        best, worst = ranked[:cut], set(ranked[-cut:])
        plan = []
        for member in range(size):
            if member in worst:
                source = rng.choice(best)
                params = self._explore(rng, previous[source].params)
                plan.append(Member(params, first + source))
            else:
                plan.append(Member(dict(previous[member].params), first + member))
        return plan

    def _sample(self, rng: random.Random) -> dict[str, Any]:
        return snap_point(self.space, {d.name: _draw(rng, d) for d in self.space.dimensions})

    def _explore(self, rng: random.Random, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dim in self.space.dimensions:
            value = params[dim.name]
            if rng.random() < self.args.resample:
                out[dim.name] = _draw(rng, dim)
            elif dim.kind == "categorical":
                out[dim.name] = value
            else:
                factor = (
                    self.args.perturbation if rng.random() < 0.5 else 1 / self.args.perturbation
                )
                out[dim.name] = _perturbed(dim, value, factor)
        return snap_point(self.space, out)


def _draw(rng: random.Random, dim: Dimension) -> Any:
    """A value from ``dim``'s prior."""
    if dim.kind == "categorical":
        return rng.choices(dim.distinct_choices, weights=dim.weights)[0]
    if dim.method in ("normal", "lognormal"):
        assert dim.mu is not None and dim.sigma is not None
        value = rng.gauss(dim.mu, dim.sigma)
        if dim.method == "lognormal":
            value = (math.e if dim.base is None else float(dim.base)) ** value
        return value
    low, high = dim.value_range()
    if dim.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return _in_bounds(dim, value)


def _perturbed(dim: Dimension, value: Any, factor: float) -> Any:
    if dim.kind == "int" and abs(value * factor - value) < 1:
        value = value + (1 if factor > 1 else -1)  # an integer must move by one at least
    else:
        value = value * factor
    if dim.method in ("normal", "lognormal"):
        return value
    return _in_bounds(dim, value)


def _in_bounds(dim: Dimension, value: float) -> Any:
    low, high = dim.value_range()
    value = min(max(value, low), high)
    if dim.kind == "int":
        return min(max(round(value), math.ceil(low)), math.floor(high))
    return value
