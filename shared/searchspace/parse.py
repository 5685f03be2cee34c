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
:data:`MAX_DIMENSIONS` dimensions of at most
:data:`~shared.searchspace.values.MAX_CATEGORIES` categories: an
optimiser's cost per draw grows with both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.searchspace.model import (
    Dimension,
    Loc,
    Method,
    SearchSpace,
    SearchSpaceError,
    SearchSpaceIssue,
    show,
)
from shared.searchspace.values import (
    PHPO_METHODS,
    Fields,
    Issues,
    build_dimension,
)

IDDS_TYPES: dict[str, frozenset[str]] = {
    "Choice": frozenset({"type", "params"}),
    "Scalar": frozenset({"type", "bounds", "params", "integer", "log"}),
    "Log": frozenset({"type", "bounds", "params", "integer"}),
}
"""iDDS type -> keys an entry of that type may have."""

MAX_DIMENSIONS = 1_000
MAX_NAME_LENGTH = 200

_METHOD_NAMES: dict[str, Method] = {name: name for name in PHPO_METHODS}
_SCALAR_METHODS: dict[tuple[bool, bool], Method] = {
    (False, False): "uniform",
    (True, False): "uniformint",
    (False, True): "loguniform",
    (True, True): "loguniformint",
}
"""(integer, log) of an iDDS Scalar or Log -> the phpo method it is."""


def parse_search_space(obj: object, *, allow_empty: bool = False) -> SearchSpace:
    """Read a search space in phpo or iDDS form; raise :class:`SearchSpaceError` listing
    every problem found. A task needs a dimension; an online study whose properties are
    all fixed values has none (``allow_empty``)."""
    issues = Issues()
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


def _entry(name: str, entry: object, issues: Issues) -> Dimension | None:
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


def _phpo_entry(name: str, entry: Mapping[str, object], issues: Issues) -> Dimension | None:
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
    return build_dimension(name, method, fields, issues)


def _idds_entry(name: str, entry: Mapping[str, object], issues: Issues) -> Dimension | None:
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
        choices: Fields = {}
        if "choices" in params:
            choices["categories"] = (params["choices"], (name, "params", "choices"))
        return build_dimension(name, "categorical", choices, issues)
    integer = _flag(entry, "integer", name, issues)
    log = kind == "Log" or _flag(entry, "log", name, issues)
    bounds = _idds_bounds(name, entry, params, kind, issues)
    if bounds is None:
        return None
    return build_dimension(name, _SCALAR_METHODS[integer, log], bounds, issues)


def _idds_bounds(
    name: str,
    entry: Mapping[str, object],
    params: Mapping[str, object],
    kind: str,
    issues: Issues,
) -> Fields | None:
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


def _flag(entry: Mapping[str, object], key: str, name: str, issues: Issues) -> bool:
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
    issues: Issues,
) -> None:
    """Report missing keys and keys that are not expected."""
    expected = ", ".join((*required, *optional)) or "no keys"
    for key in required:
        if key not in obj:
            issues.add((*where, key), f"missing ({what} needs {', '.join(required)})")
    for other in obj:
        if other not in required and other not in optional:
            issues.add((*where, str(other)), f"unexpected key for {what}; expected {expected}")
