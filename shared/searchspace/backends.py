"""Turning a :class:`SearchSpace` into Optuna distributions or a Nevergrad parametrisation.

Called by the built-in optimisers and the Hopaas-compatible API. Neither library can
express every phpo method, so these are the approximations, chosen so that every value
drawn is valid for :func:`~shared.searchspace.points.validate_point`:

======================  =====================================  ===========================
method                  Optuna                                 Nevergrad
======================  =====================================  ===========================
categorical             CategoricalDistribution                Choice
uniform / loguniform    FloatDistribution (log)                Scalar / Log
uniformint / ...int     IntDistribution (log)                  same, with integer casting
quniform                FloatDistribution(step=q); high is     Scalar, then
                        lowered to low + k*q as Optuna needs   :func:`snap_point`
qloguniform             FloatDistribution(log=True), then      Log, then
                        :func:`snap_point` (Optuna cannot      :func:`snap_point`
                        combine log and step)
normal                  FloatDistribution(mu ± 4 sigma):       Scalar(init=mu) with
                        **uniform, the bell shape is lost**    mutation sigma (exact)
lognormal               FloatDistribution over base**(mu ±     Log(init=base**mu,
                        4 sigma), log=True: **log-uniform,     exponent=base**sigma)
                        the bell shape is lost**               (exact)
======================  =====================================  ===========================

A category written more than once (``[1, 1, 2]``) is a weighted choice. Both libraries
get the categories as written: Optuna's CategoricalDistribution draws an index, so the
random sampler, QMC and TPE's prior pick 1 twice as often as 2; a told value is stored
under its first index, so what TPE learns goes to the value, while the repeat keeps its
prior weight. Nevergrad's Choice weighs each entry, so a repeat starts with twice the
weight and its optimisers adapt the weights from there. CMA-ES has no categorical
model (Optuna samples those dimensions independently, with the weights), and the grid
visits each distinct category once.

``grid_search`` is ignored by both: neither library enumerates a grid here.
Nevergrad is imported only when :func:`to_nevergrad` is called, because importing it
takes seconds and most callers (the API parsing a submission) never need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from shared.searchspace.conditions import children, parent_domain, same_value
from shared.searchspace.model import Dimension, SearchSpace

if TYPE_CHECKING:
    import nevergrad as ng
    import optuna


def to_optuna(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Optuna distributions by name, for ``study.ask(fixed_distributions=...)``; pass
    what the trial returns through :func:`snap_point` before using it as a point."""
    return {dim.name: _optuna(dim) for dim in space.dimensions}


def _optuna(dim: Dimension) -> BaseDistribution:
    if dim.kind == "categorical":
        return CategoricalDistribution(dim.choices)
    if dim.kind == "int":
        assert dim.low is not None and dim.high is not None
        return IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    low, high = dim.value_range()
    if dim.method == "quniform":
        assert dim.q is not None and dim.low is not None
        top = _grid_value(dim.low, dim.q, _grid_steps(dim))
        return FloatDistribution(low, top, step=float(dim.q))
    return FloatDistribution(low, high, log=dim.log)


def suggest_active(
    trial: optuna.Trial, space: SearchSpace, distributions: Mapping[str, BaseDistribution]
) -> dict[str, Any]:
    """Draw a point of a conditional space by define-by-run: each dimension, parents
    first, is suggested only if it is active given the values drawn so far, so the
    trial (and the point) holds exactly the active ones."""
    params: dict[str, Any] = {}
    active: set[str] = set()
    for dim in space.dimensions:
        if dim.parent is not None and not (
            dim.parent in active
            and any(same_value(params[dim.parent], v) for v in dim.parent_values)
        ):
            continue
        params[dim.name] = _suggest(trial, dim.name, distributions[dim.name])
        active.add(dim.name)
    return params


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


BRANCH = "\x00"
"""Prefix of the Nevergrad key under which a parent and its dependants sit (dimension
names hold no control characters, so it never meets one)."""


def to_nevergrad(space: SearchSpace) -> ng.p.Dict:
    """A Nevergrad ``Dict`` parametrisation whose ``value`` is a point (after
    :func:`from_nevergrad`, and :func:`snap_point` for the quantised methods).

    In a conditional space, a dimension that others depend on is a ``Choice`` of
    ``Dict``-s, one per value it takes, each holding that value and the dimensions
    active with it (themselves built the same way): Nevergrad's form of a tree of
    exclusive subspaces. An integer parent (a ``repeat`` count) is a ``Choice`` over its
    values, so its order is not modelled.
    """
    import nevergrad as ng

    kids = children(space)

    def entries(dims: list[Dimension]) -> dict[str, Any]:
        return {(BRANCH + d.name if d.name in kids else d.name): node(d) for d in dims}

    def node(dim: Dimension) -> Any:
        if dim.name not in kids:
            return _nevergrad(ng, dim)
        values = dim.choices if dim.kind == "categorical" else parent_domain(dim)
        return ng.p.Choice(
            [
                ng.p.Dict(**{dim.name: value}, **entries(_used_with(kids[dim.name], value)))
                for value in values
            ]
        )

    return ng.p.Dict(**entries([d for d in space.dimensions if d.parent is None]))


def _used_with(dims: list[Dimension], value: object) -> list[Dimension]:
    return [d for d in dims if any(same_value(value, v) for v in d.parent_values)]


def from_nevergrad(value: Mapping[str, Any]) -> dict[str, Any]:
    """The point a value of :func:`to_nevergrad`'s parametrisation stands for."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key.startswith(BRANCH):
            out.update(from_nevergrad(item))
        else:
            out[key] = item
    return out


def nevergrad_value(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """A point as a value of :func:`to_nevergrad`'s parametrisation (for ``suggest``)."""
    if not space.conditional:
        return dict(params)
    kids = children(space)

    def entries(dims: list[Dimension]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dim in dims:
            if dim.name not in params:
                continue
            value = params[dim.name]
            if dim.name in kids:
                inner = entries(_used_with(kids[dim.name], value))
                out[BRANCH + dim.name] = {dim.name: value, **inner}
            else:
                out[dim.name] = value
        return out

    return entries([d for d in space.dimensions if d.parent is None])


def _nevergrad(ng: Any, dim: Dimension) -> Any:
    if dim.kind == "categorical":
        return ng.p.Choice(list(dim.choices))
    if dim.method == "normal":
        # A fixed mutation sigma: with Nevergrad's default (mutable) one, draws spread
        # more than twice as wide as the prior.
        return ng.p.Scalar(init=dim.mu, mutable_sigma=False).set_mutation(sigma=dim.sigma)
    if dim.method == "lognormal":
        assert dim.mu is not None and dim.sigma is not None
        base = math.e if dim.base is None else float(dim.base)
        return ng.p.Log(init=base**dim.mu, exponent=base**dim.sigma)
    scalar = ng.p.Log if dim.log else ng.p.Scalar
    param = scalar(lower=dim.low, upper=dim.high)
    return param.set_integer_casting() if dim.kind == "int" else param


def snap_point(space: SearchSpace, params: Mapping[str, object]) -> dict[str, object]:
    """Bring a point drawn by a backend onto the space's grid.

    Quantised dimensions go to the nearest ``low + k*q`` inside ``[low, high]``, computed
    in decimal so that ``0.1`` steps give ``0.3`` and not ``0.30000000000000004``; whole
    floats of integer dimensions become ints. Anything else, including names not in the
    space and values of the wrong type, passes unchanged for
    :func:`~shared.searchspace.points.validate_point` to report.
    """
    out = dict(params)
    for dim in space.dimensions:
        value = out.get(dim.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if dim.kind == "int" and isinstance(value, float) and value.is_integer():
            out[dim.name] = int(value)
        elif dim.q is not None and dim.low is not None:
            steps = round((value - dim.low) / dim.q)
            out[dim.name] = _grid_value(dim.low, dim.q, min(max(steps, 0), _grid_steps(dim)))
    return out


def _grid_steps(dim: Dimension) -> int:
    """The largest k with ``low + k*q <= high``, in decimal as Optuna computes it."""
    assert dim.low is not None and dim.high is not None and dim.q is not None
    return int((_decimal(dim.high) - _decimal(dim.low)) // _decimal(dim.q))


def _grid_value(low: float, q: float, steps: int) -> float:
    return float(_decimal(low) + steps * _decimal(q))


def _decimal(value: float) -> Decimal:
    return Decimal(str(value))
