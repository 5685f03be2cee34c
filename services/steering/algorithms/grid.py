"""Grid search: every combination of a finite set of values per dimension, each once.

Offered as ``{"library": "optuna", "algorithm": "grid"}`` for users who know Optuna's
GridSampler, but enumerated here: GridSampler cannot leave a dimension out of the grid,
and once its grid is exhausted it starts over instead of stopping.

The values of each dimension (``n_points`` and ``max_exact`` are the ``args``):

==========================  =============================================================
categorical                 every category once (a repeated one too); with ``grid_search:
                            0`` (hpogrid's "choice", not "grid_search") the dimension is
                            not part of the grid and each point draws it at random, a
                            repeated category as often as it is written
uniformint, loguniformint   every integer if there are at most ``max_exact`` (default
                            20), else ``n_points`` values spread evenly (geometrically for
                            the log method) from low to high, rounded
quniform, qloguniform       every ``low + k*q`` if there are at most ``max_exact``, else
                            ``n_points`` values spread as above, snapped onto the step
uniform, loguniform         ``n_points`` (default 5) values from low to high inclusive,
                            evenly or geometrically spaced
normal, lognormal           the ``n_points`` quantiles ``(i + 0.5) / n_points`` of the
                            prior (``base ** quantile`` for lognormal)
==========================  =============================================================

Points are drawn in random order (seeded per draw) among the grid points that no
stored point occupies, whatever that point's status: a failed grid point is not
retried even with ``failedPoints: exclude`` (there is no model for the exclusion to
protect). When every grid point is stored, :meth:`GridProposer.ask` returns ``None``
and the draw reports the search as exhausted.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from services.steering.algorithms.base import DrawRequest, Observation, SteeringUnavailable
from shared.searchspace import Dimension, SearchSpace, canonical_key, snap_point

FULL_ENUMERATION = 0.5
"""Above this fraction of the grid stored, the free indices are listed rather than
found by rejection sampling."""


@dataclass(frozen=True)
class GridArgs:
    """The ``args`` of the grid algorithm."""

    n_points: int = 5
    max_exact: int = 20

    def __post_init__(self) -> None:
        for name in ("n_points", "max_exact"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def dimension_values(dim: Dimension, args: GridArgs) -> list[Any]:
    """The grid values of one dimension (see the module docstring)."""
    if dim.kind == "categorical":
        return list(dim.distinct_choices)
    if dim.method in ("normal", "lognormal"):
        assert dim.mu is not None and dim.sigma is not None
        prior = NormalDist(dim.mu, dim.sigma)
        quantiles = [prior.inv_cdf((i + 0.5) / args.n_points) for i in range(args.n_points)]
        if dim.method == "normal":
            return _unique([_tidy(q) for q in quantiles])
        base = math.e if dim.base is None else float(dim.base)
        return _unique([_tidy(base**q) for q in quantiles])
    assert dim.low is not None and dim.high is not None
    low, high = float(dim.low), float(dim.high)
    if dim.kind == "int":
        if high - low + 1 <= args.max_exact:
            return list(range(int(low), int(high) + 1))
        return _unique([round(v) for v in _spread(low, high, args.n_points, dim.log)])
    if dim.q is not None:
        steps = math.floor((high - low) / dim.q + 1e-9)
        if steps + 1 <= args.max_exact:
            candidates = [low + k * dim.q for k in range(steps + 1)]
        else:
            candidates = _spread(low, high, args.n_points, dim.log)
        space = SearchSpace(dimensions=(dim,))
        return _unique([snap_point(space, {dim.name: v})[dim.name] for v in candidates])
    return _unique(
        [min(max(_tidy(v), low), high) for v in _spread(low, high, args.n_points, dim.log)]
    )


def _spread(low: float, high: float, n: int, log: bool) -> list[float]:
    if n == 1:
        return [math.sqrt(low * high) if log else (low + high) / 2]
    if log:
        a, b = math.log(low), math.log(high)
        return [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
    return [low + (high - low) * i / (n - 1) for i in range(n)]


def _tidy(value: float) -> float:
    """Twelve significant digits, so that ``1e-4`` is not ``9.999999999999999e-05``."""
    return float(f"{value:.12g}")


def _unique(values: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for value in values:
        key = canonical_key({"v": value})
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


CONDITIONAL_GRID = (
    "grid does not enumerate conditional spaces (oneOf, repeat, when): choose another "
    "algorithm, such as tpe or random"
)


class GridProposer:
    def __init__(self, request: DrawRequest) -> None:
        if request.space.conditional:
            raise SteeringUnavailable(CONDITIONAL_GRID)
        args = GridArgs(**request.args)  # type: ignore[arg-type]
        self._rng = random.Random(request.draw_seed)  # noqa: S311 (a seeded search order)
        self._free = [d for d in request.space.dimensions if _free(d)]
        self._dims = [d for d in request.space.dimensions if not _free(d)]
        self._values = [dimension_values(d, args) for d in self._dims]
        self._positions = [
            {canonical_key({"v": v}): i for i, v in enumerate(values)} for values in self._values
        ]
        self.size = math.prod(len(v) for v in self._values)
        taken = (self._index(params) for params in request.stored)
        self._taken = {i for i in taken if i is not None}

    def ask(self) -> dict[str, Any] | None:
        index = self._free_index()
        if index is None:
            return None
        self._taken.add(index)
        params = self._decode(index)
        for dim in self._free:
            params[dim.name] = self._rng.choice(dim.choices)
        return params

    def prepare(self, draw_seed: int) -> None:
        """Nothing: the search order goes on from draw to draw."""
        del draw_seed

    def accept(self, index: int) -> None:
        """Nothing: :meth:`ask` took the grid point already."""
        del index

    def discard(self, known: Observation | None, open_index: int | None = None) -> None:
        """Nothing to undo: a grid point is never proposed twice."""
        del known, open_index

    def tell(self, index: int, observation: Observation | None) -> None:
        """Nothing: the grid does not learn."""
        del index, observation

    def _free_index(self) -> int | None:
        if len(self._taken) >= self.size:
            return None
        if len(self._taken) < FULL_ENUMERATION * self.size:
            while True:
                index = self._rng.randrange(self.size)
                if index not in self._taken:
                    return index
        return self._rng.choice([i for i in range(self.size) if i not in self._taken])

    def _decode(self, index: int) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for dim, values in zip(self._dims, self._values, strict=True):
            index, position = divmod(index, len(values))
            params[dim.name] = values[position]
        return params

    def _index(self, params: dict[str, Any]) -> int | None:
        """The grid index of a stored point, ``None`` if it is not on the grid."""
        index = 0
        for dim, positions in reversed(list(zip(self._dims, self._positions, strict=True))):
            position = positions.get(canonical_key({"v": params.get(dim.name)}))
            if position is None:
                return None
            index = index * len(positions) + position
        return index


def _free(dim: Dimension) -> bool:
    return dim.kind == "categorical" and dim.grid_search is False


def grid_size(space: SearchSpace, args: GridArgs) -> int:
    """How many points the grid of ``space`` has."""
    return math.prod(len(dimension_values(d, args)) for d in space.dimensions if not _free(d))
