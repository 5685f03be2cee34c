"""Checking points that steering containers and optimisers produce, and recognising
duplicates.

A steering container is user code: the scheduler runs :func:`validate_point` on every
point it writes before an evaluation is spent on it, and :func:`canonical_key` to notice
a point that was already proposed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from numbers import Integral, Real

from shared.searchspace.conditions import active_names
from shared.searchspace.model import Dimension, SearchSpace, show

RELATIVE_SLACK = 1e-9
"""Bounds are widened by this fraction of their magnitude, for values computed in
floating point (``exp(log(high))`` may land one ulp above ``high``)."""

KEY_DIGITS = 12
"""Significant digits that :func:`canonical_key` keeps of a non-whole float."""


def validate_point(space: SearchSpace, params: object) -> list[str]:
    """Why ``params`` is not a point of ``space``: one message per problem (missing or
    unknown names, wrong types, values out of bounds or not among the categories), empty
    when it is one.

    Integers must be JSON integers. A category matches when it is equal and of the same
    JSON type (``1.0`` matches the category ``1``, ``true`` does not). Quantised
    dimensions are not checked for lying on the grid, and accept values up to ``q/2``
    outside ``[low, high]``: hyperopt-style containers round ``x/q`` to a whole number,
    which may step that far out. Normal priors accept any finite number (positive for
    ``lognormal``).

    In a conditional space a point holds exactly its active dimensions
    (:func:`~shared.searchspace.conditions.active_names`): a value for one that is not
    active is refused, as is a missing active one.
    """
    if not isinstance(params, Mapping):
        return [f"a point must be a JSON object of parameter values, got {show(params)}"]
    errors: list[str] = []
    active = active_names(space, params) if space.conditional else None
    for dim in space.dimensions:
        if active is not None and dim.name not in active:
            if dim.name in params:
                errors.append(f"{dim.name}: {_inactive(dim, params)}")
            continue
        if dim.name not in params:
            errors.append(f"{dim.name}: missing")
            continue
        problem = _check_value(dim, params[dim.name])
        if problem:
            errors.append(f"{dim.name}: {problem}")
    names = set(space.names)
    errors.extend(f"{key}: not in the search space" for key in params if key not in names)
    return errors


def _inactive(dim: Dimension, params: Mapping[str, object]) -> str:
    assert dim.parent is not None
    used = f"used only when {dim.parent} is one of {show(list(dim.parent_values))}"
    if dim.parent in params:
        return f"not active: {used}, and it is {show(params[dim.parent])}"
    return f"not active: {used}, and {dim.parent} is not active"


def value_issue(dim: Dimension, value: object) -> str | None:
    """Why ``value`` is not a value of ``dim`` (a default, a point's entry); None if it is."""
    return _check_value(dim, value)


def _check_value(dim: Dimension, value: object) -> str | None:
    if dim.kind == "categorical":
        kind = _json_type(value)
        if any(_json_type(c) == kind and c == value for c in dim.choices):
            return None
        return f"{show(value)} is not one of {show(list(dim.choices))}"
    if dim.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"expected an integer, got {show(value)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"expected a number, got {show(value)}"
    if not math.isfinite(value):
        return f"expected a finite number, got {value}"
    if dim.method == "normal":
        return None
    if dim.method == "lognormal":
        return None if value > 0 else f"{value} is not > 0"
    assert dim.low is not None and dim.high is not None
    slack = RELATIVE_SLACK * max(abs(dim.low), abs(dim.high))
    if dim.q is not None:
        slack += dim.q / 2
    if dim.low - slack <= value <= dim.high + slack and (value > 0 or not dim.log):
        return None
    return f"{value} is outside [{dim.low}, {dim.high}]"


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def canonical_key(params: Mapping[str, object]) -> str:
    """A stable string for a point: equal for points that are the same for any
    evaluation.

    Keys are sorted; numbers keep :data:`KEY_DIGITS` significant digits, so float noise
    such as ``0.30000000000000004`` against ``0.3`` does not make two points differ; a
    whole float is written as an integer, so ``1.0`` and ``1`` give the same key (no
    valid space can hold both as different categories); booleans stay distinct from
    numbers (``true`` is not ``1``). NumPy scalars count as the numbers they hold.
    """
    return json.dumps(_normalise(params), sort_keys=True, separators=(",", ":"))


def _normalise(value: object) -> object:
    item = getattr(value, "item", None)
    if type(value).__module__ == "numpy" and callable(item):
        value = item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        number = float(value)
        if not math.isfinite(number):
            return number
        rounded = float(f"{number:.{KEY_DIGITS}g}")
        if rounded.is_integer() and abs(rounded) < 2**53:
            return int(rounded)
        return rounded
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    raise TypeError(f"not a JSON value: {value!r}")
