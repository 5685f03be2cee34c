"""Reading a user's search space, in either reference form, into a :class:`SearchSpace`.

Called when a task is submitted, so everything wrong with the space is reported at once
(a 422 naming each bad key) instead of surfacing later in a steering container.

Accepted forms (each entry is read in the form it is written in):

* phpo/hpogrid: ``{"name": {"method": M, "dimension": {...}}}`` with the keys of
  :data:`PHPO_METHODS`; ``grid_search`` (0/1 or a boolean) is optional for
  ``categorical`` and ``base`` (> 1) for the log methods, as hpogrid writes them.
* iDDS/Nevergrad, the subset whose meaning is fixed without running Nevergrad:
  ``{"type": "Choice", "params": {"choices": [...]}}``;
  ``{"type": "Scalar", "bounds": [low, high]}`` or with ``"params": {"lower": ..,
  "upper": ..}`` instead of ``bounds``, plus optional ``"integer": true`` and
  ``"log": true``; ``{"type": "Log", ...}`` alike (log scale, optional ``integer``).
  Unbounded scalars, ``init``, mutation settings and other Nevergrad types are refused.

Bounds of integer methods must be whole numbers (``10.0`` is read as ``10``); every
integer must fit in 8 bytes (the database stores no larger one). Categories must be JSON
scalars (Optuna stores no others). A category written more than once is a weighted
choice, as in hpogrid and Nevergrad (``[1, 1, 2]`` draws 1 twice as often as 2 a
priori; see :mod:`shared.searchspace.backends`); ``1`` and ``1.0`` are the same
category, but ``true`` and ``1`` cannot share a list: Python holds them equal, so Optuna,
which looks a category up by equality, would hand back the wrong one.

Everything here takes time linear in the size of the input, and a space has at most
:data:`MAX_DIMENSIONS` dimensions of at most :data:`MAX_CATEGORIES` categories: an
optimiser's cost per draw grows with both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from shared.bounds import int64_issue
from shared.searchspace.model import (
    Dimension,
    JsonScalar,
    Loc,
    Method,
    SearchSpace,
    SearchSpaceError,
    SearchSpaceIssue,
    show,
)

PHPO_METHODS: dict[Method, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "categorical": (("categories",), ("grid_search",)),
    "uniform": (("low", "high"), ()),
    "uniformint": (("low", "high"), ()),
    "loguniform": (("low", "high"), ("base",)),
    "loguniformint": (("low", "high"), ("base",)),
    "normal": (("mu", "sigma"), ()),
    "lognormal": (("mu", "sigma"), ("base",)),
    "quniform": (("low", "high", "q"), ()),
    "qloguniform": (("low", "high", "q"), ("base",)),
}
"""Method -> (required, optional) keys of its ``dimension`` object."""

IDDS_TYPES: dict[str, frozenset[str]] = {
    "Choice": frozenset({"type", "params"}),
    "Scalar": frozenset({"type", "bounds", "params", "integer", "log"}),
    "Log": frozenset({"type", "bounds", "params", "integer"}),
}
"""iDDS type -> keys an entry of that type may have."""

MAX_DIMENSIONS = 1_000
MAX_CATEGORIES = 10_000
MAX_NAME_LENGTH = 200
MAX_ISSUES = 50
"""Problems listed in one error; the rest are counted."""

_METHOD_NAMES: dict[str, Method] = {name: name for name in PHPO_METHODS}
_SCALAR_METHODS: dict[tuple[bool, bool], Method] = {
    (False, False): "uniform",
    (True, False): "uniformint",
    (False, True): "loguniform",
    (True, True): "loguniformint",
}
"""(integer, log) of an iDDS Scalar or Log -> the phpo method it is."""
_INT_METHODS = frozenset({"uniformint", "loguniformint"})
_LOG_METHODS = frozenset({"loguniform", "loguniformint", "lognormal", "qloguniform"})
# A field of a dimension: its raw value and where the user wrote it.
_Fields = dict[str, tuple[object, Loc]]


class _Issues:
    def __init__(self) -> None:
        self.items: list[SearchSpaceIssue] = []
        self.dropped = 0

    def add(self, loc: Loc, msg: str) -> None:
        if len(self.items) < MAX_ISSUES:
            self.items.append(SearchSpaceIssue(loc, msg))
        else:
            self.dropped += 1

    @property
    def count(self) -> int:
        return len(self.items) + self.dropped

    def error(self) -> SearchSpaceError:
        items = list(self.items)
        if self.dropped:
            items.append(SearchSpaceIssue((), f"and {self.dropped} more problems"))
        return SearchSpaceError(items)


def parse_search_space(obj: object, *, allow_empty: bool = False) -> SearchSpace:
    """Read a search space in phpo or iDDS form; raise :class:`SearchSpaceError` listing
    every problem found. A task needs a dimension; an online study whose properties are
    all fixed values has none (``allow_empty``)."""
    issues = _Issues()
    dims: list[Dimension] = []
    if not isinstance(obj, Mapping):
        issues.add((), f"must be a JSON object mapping names to dimensions, got {show(obj)}")
    elif not obj and not allow_empty:
        issues.add((), "is empty: give at least one dimension")
    elif len(obj) > MAX_DIMENSIONS:
        issues.add((), f"has {len(obj)} dimensions; at most {MAX_DIMENSIONS} are allowed")
    else:
        for name, entry in obj.items():
            if not isinstance(name, str) or not name:
                where = name if isinstance(name, str | int) else show(name)
                issues.add((where,), "dimension names must be non-empty strings")
                continue
            problem = _name_issue(name)
            if problem:
                issues.add((name,), problem)
                continue
            dim = _entry(name, entry, issues)
            if dim is not None:
                dims.append(dim)
    if issues.count:
        raise issues.error()
    return SearchSpace(dimensions=tuple(dims))


def _name_issue(name: str) -> str | None:
    if len(name) > MAX_NAME_LENGTH:
        return f"dimension names are at most {MAX_NAME_LENGTH} characters"
    if any(ord(c) < 32 for c in name):
        return "dimension names must not contain control characters (NUL, newline, ...)"
    return None


def parse_segmented(obj: object, segment_count: int) -> list[SearchSpace]:
    """One space per segment: ``obj`` is a list with one space per segment, in segment
    order, or a single space that every segment shares. Issues inside the list are
    located under the list index."""
    if segment_count < 1:
        raise ValueError(f"segment_count must be at least 1, got {segment_count}")
    if not isinstance(obj, list):
        return [parse_search_space(obj)] * segment_count
    issues: list[SearchSpaceIssue] = []
    if len(obj) != segment_count:
        issues.append(
            SearchSpaceIssue(
                (),
                f"has {len(obj)} search spaces for {segment_count} segments: give one per "
                "segment, or a single space for all of them",
            )
        )
    spaces: list[SearchSpace] = []
    for index, item in enumerate(obj):
        try:
            spaces.append(parse_search_space(item))
        except SearchSpaceError as exc:
            issues.extend(exc.prefixed(index).issues)
    if issues:
        raise SearchSpaceError(issues)
    return spaces


def _entry(name: str, entry: object, issues: _Issues) -> Dimension | None:
    if not isinstance(entry, Mapping):
        issues.add((name,), f"must be an object, got {show(entry)}")
        return None
    if "method" in entry and "type" in entry:
        issues.add((name,), "has both 'method' (phpo form) and 'type' (iDDS form)")
        return None
    if "type" in entry:
        return _idds_entry(name, entry, issues)
    if "method" in entry or "dimension" in entry:
        return _phpo_entry(name, entry, issues)
    issues.add((name,), "expected 'method' and 'dimension' (phpo form) or 'type' (iDDS form)")
    return None


def _phpo_entry(name: str, entry: Mapping[str, object], issues: _Issues) -> Dimension | None:
    _check_keys(entry, (name,), ("method", "dimension"), (), "an entry", issues)
    raw_method = entry.get("method")
    method = _METHOD_NAMES.get(raw_method) if isinstance(raw_method, str) else None
    if "method" in entry and method is None:
        known = ", ".join(PHPO_METHODS)
        issues.add((name, "method"), f"unknown method {show(raw_method)}; known: {known}")
    dimension = entry.get("dimension")
    if "dimension" in entry and not isinstance(dimension, Mapping):
        issues.add((name, "dimension"), f"must be an object, got {show(dimension)}")
    if method is None or not isinstance(dimension, Mapping):
        return None
    required, optional = PHPO_METHODS[method]
    where: Loc = (name, "dimension")
    _check_keys(dimension, where, required, optional, method, issues)
    fields = {
        key: (dimension[key], (*where, key)) for key in (*required, *optional) if key in dimension
    }
    return _dimension(name, method, fields, issues)


def _idds_entry(name: str, entry: Mapping[str, object], issues: _Issues) -> Dimension | None:
    kind = entry["type"]
    if not isinstance(kind, str) or kind not in IDDS_TYPES:
        known = ", ".join(sorted(IDDS_TYPES))
        issues.add((name, "type"), f"unknown type {show(kind)}; known types: {known}")
        return None
    allowed = IDDS_TYPES[kind]
    _check_keys(entry, (name,), ("type",), tuple(sorted(allowed - {"type"})), kind, issues)
    params = entry.get("params", {})
    if not isinstance(params, Mapping):
        issues.add((name, "params"), f"must be an object, got {show(params)}")
        return None
    if kind == "Choice":
        _check_keys(params, (name, "params"), ("choices",), (), kind, issues)
        choices: _Fields = {}
        if "choices" in params:
            choices["categories"] = (params["choices"], (name, "params", "choices"))
        return _dimension(name, "categorical", choices, issues)
    integer = _flag(entry, "integer", name, issues)
    log = kind == "Log" or _flag(entry, "log", name, issues)
    bounds = _idds_bounds(name, entry, params, kind, issues)
    if bounds is None:
        return None
    return _dimension(name, _SCALAR_METHODS[integer, log], bounds, issues)


def _idds_bounds(
    name: str,
    entry: Mapping[str, object],
    params: Mapping[str, object],
    kind: str,
    issues: _Issues,
) -> _Fields | None:
    """The bounds of a Scalar or Log, from ``bounds`` or from ``params``, not both."""
    in_params = "lower" in params or "upper" in params
    if "bounds" in entry and in_params:
        issues.add(
            (name, "params"),
            "bounds are given twice: use either 'bounds' or 'params': {'lower', 'upper'}",
        )
        return None
    if in_params:
        _check_keys(params, (name, "params"), ("lower", "upper"), (), kind, issues)
        if "lower" not in params or "upper" not in params:
            return None
        return {
            "low": (params["lower"], (name, "params", "lower")),
            "high": (params["upper"], (name, "params", "upper")),
        }
    _check_keys(params, (name, "params"), (), ("lower", "upper"), kind, issues)
    if "bounds" not in entry:
        issues.add(
            (name, "bounds"),
            "missing: give 'bounds': [low, high] or 'params': "
            "{'lower': low, 'upper': high} (unbounded scalars are not supported)",
        )
        return None
    bounds = entry["bounds"]
    if not isinstance(bounds, list) or len(bounds) != 2:
        issues.add((name, "bounds"), f"must be a list [low, high], got {show(bounds)}")
        return None
    return {"low": (bounds[0], (name, "bounds", 0)), "high": (bounds[1], (name, "bounds", 1))}


def _flag(entry: Mapping[str, object], key: str, name: str, issues: _Issues) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        issues.add((name, key), f"must be true or false, got {show(value)}")
        return False
    return value


def _check_keys(
    obj: Mapping[Any, object],
    where: Loc,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    what: str,
    issues: _Issues,
) -> None:
    """Report missing keys and keys that are not expected."""
    expected = ", ".join((*required, *optional)) or "no keys"
    for key in required:
        if key not in obj:
            issues.add((*where, key), f"missing ({what} needs {', '.join(required)})")
    for other in obj:
        if other not in required and other not in optional:
            issues.add((*where, str(other)), f"unexpected key for {what}; expected {expected}")


def _dimension(name: str, method: Method, fields: _Fields, issues: _Issues) -> Dimension | None:
    """Check the values of one dimension against its method; None if any is wrong."""
    before = issues.count
    if method == "categorical":
        choices = _categories(fields, issues)
        grid = _grid_search(fields, issues)
        if issues.count > before or choices is None:
            return None
        return Dimension(
            name=name, method=method, kind="categorical", choices=choices, grid_search=grid
        )
    if any(key not in fields for key in PHPO_METHODS[method][0]):
        return None  # already reported as missing
    integer = method in _INT_METHODS
    values = {
        key: _number(raw, loc, integer and key in ("low", "high"), issues)
        for key, (raw, loc) in fields.items()
    }
    low, high, q = values.get("low"), values.get("high"), values.get("q")
    log = method in _LOG_METHODS
    if low is not None and high is not None and low >= high:
        issues.add(fields["high"][1], f"must be greater than low ({low}), got {high}")
    elif log and low is not None and low <= 0:
        issues.add(fields["low"][1], f"must be > 0 for the log scale of {method}, got {low}")
    if q is not None and q <= 0:
        issues.add(fields["q"][1], f"must be > 0, got {q}")
    elif q is not None and low is not None and high is not None and q > high - low:
        issues.add(
            fields["q"][1],
            f"{q} is larger than high - low ({high - low}): only low could ever be drawn",
        )
    sigma = values.get("sigma")
    if sigma is not None and sigma <= 0:
        issues.add(fields["sigma"][1], f"must be > 0, got {sigma}")
    base = values.get("base")
    if base is not None and base <= 1:
        issues.add(fields["base"][1], f"must be > 1, got {base}")
    if issues.count > before or any(v is None for v in values.values()):
        return None
    dim = Dimension(
        name=name,
        method=method,
        kind="int" if integer else "float",
        log=log,
        low=low,
        high=high,
        q=q,
        mu=values.get("mu"),
        sigma=sigma,
        base=base,
    )
    if method in ("normal", "lognormal"):
        lowest, highest = dim.value_range()
        if not math.isfinite(lowest) or not math.isfinite(highest) or (log and lowest <= 0):
            issues.add(fields["mu"][1], "mu and sigma put values beyond floating-point range")
            return None
    return dim


def _number(value: object, loc: Loc, integer: bool, issues: _Issues) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        issues.add(loc, f"must be a number, got {show(value)}")
        return None
    problem = int64_issue(value) if isinstance(value, int) else None
    if problem:
        issues.add(loc, problem)
        return None
    if not math.isfinite(value):
        issues.add(loc, f"must be finite, got {value}")
        return None
    if integer:
        if not float(value).is_integer():
            issues.add(loc, f"must be a whole number for an integer method, got {value}")
            return None
        return int(value)
    return value


def _categories(fields: _Fields, issues: _Issues) -> tuple[JsonScalar, ...] | None:
    """The categories as written, repeats included (a repeat is a weight)."""
    if "categories" not in fields:
        return None
    raw, loc = fields["categories"]
    if not isinstance(raw, list):
        issues.add(loc, f"must be a list, got {show(raw)}")
        return None
    if not raw:
        issues.add(loc, "is empty: give at least one category")
        return None
    if len(raw) > MAX_CATEGORIES:
        issues.add(loc, f"has {len(raw)} categories; at most {MAX_CATEGORIES} are allowed")
        return None
    first: dict[JsonScalar, int] = {}
    """Where each value was first written; Python's equality, so 1, 1.0, true share one."""
    ok = True
    for index, value in enumerate(raw):
        if value is not None and not isinstance(value, bool | int | float | str):
            issues.add(
                (*loc, index), f"must be a string, number, boolean or null, got {show(value)}"
            )
            ok = False
            continue
        problem = int64_issue(value) if isinstance(value, int) else None
        if problem is None and isinstance(value, float) and not math.isfinite(value):
            problem = f"must be finite, got {value}"
        if problem:
            issues.add((*loc, index), problem)
            ok = False
            continue
        earlier = first.setdefault(value, index)
        if isinstance(raw[earlier], bool) != isinstance(value, bool):
            issues.add(
                (*loc, index),
                f"{show(value)} and category {earlier} ({show(raw[earlier])}) are equal to "
                "Python, so Optuna cannot tell them apart: use distinct values",
            )
            ok = False
    return tuple(raw) if ok else None


def _grid_search(fields: _Fields, issues: _Issues) -> bool | None:
    if "grid_search" not in fields:
        return None
    raw, loc = fields["grid_search"]
    if raw in (0, 1) and isinstance(raw, bool | int):
        return bool(raw)
    issues.add(loc, f"must be 0, 1, true or false, got {show(raw)}")
    return None
