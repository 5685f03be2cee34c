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
from dataclasses import dataclass
from typing import Any

from shared.searchspace.conditions import Pending, Scope, When, resolve
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
from shared.searchspace.points import value_issue
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
        pending: list[Pending] = []
        _subspace(obj, _Context("", (), (), None), pending, issues)
        if len(pending) > MAX_DIMENSIONS:
            issues.add((), f"has {len(pending)} dimensions; at most {MAX_DIMENSIONS} are allowed")
        if not issues.count:
            dims.extend(resolve(pending, issues))
    if issues.count:
        raise issues.error()
    return SearchSpace(dimensions=tuple(dims))


@dataclass(frozen=True)
class _Context:
    """Where a subspace is: the prefix of its names (a ``repeat`` block's copy number),
    its location in the JSON, its scope, and the condition its entries inherit."""

    prefix: str
    where: Loc
    scope: Scope
    implied: tuple[str, tuple[JsonScalar, ...]] | None


def _subspace(obj: Mapping[Any, object], ctx: _Context, out: list[Pending], issues: Issues) -> None:
    for name, entry in obj.items():
        if not isinstance(name, str) or not name:
            key = name if isinstance(name, str | int) else show(name)
            issues.add((*ctx.where, key), "dimension names must be non-empty strings")
            continue
        loc: Loc = (*ctx.where, name)
        problem = _name_issue(name)
        if problem:
            issues.add(loc, problem)
            continue
        if len(out) > MAX_DIMENSIONS:
            return
        method = entry.get("method") if isinstance(entry, Mapping) else None
        if isinstance(entry, Mapping) and method in _STRUCTURES:
            _structure(name, entry, ctx, out, issues)
            continue
        when = _when(entry, loc, ctx, issues) if isinstance(entry, Mapping) else None
        plain = (
            {k: v for k, v in entry.items() if k != "when"} if isinstance(entry, Mapping) else entry
        )
        dim = _located(ctx.prefix + name, loc, plain, issues)
        if dim is not None:
            out.append(_pending(dim, loc, ctx, when))


def _pending(dim: Dimension, loc: Loc, ctx: _Context, when: When | None) -> Pending:
    if when is None and ctx.implied is not None:
        dim = dim.model_copy(update={"parent": ctx.implied[0], "parent_values": ctx.implied[1]})
    return Pending(dim, loc, ctx.scope, when)


def _located(name: str, loc: Loc, entry: object, issues: Issues) -> Dimension | None:
    """Read one dimension named ``name`` with its problems located at ``loc`` (entries
    inside a ``oneOf`` or ``repeat`` are reported where they were written)."""
    inner = Issues()
    dim = _entry(name, entry, inner)
    for issue in inner.items:
        issues.add((*loc, *issue.loc[1:]), issue.msg)
    for _ in range(inner.dropped):
        issues.add(loc, "another problem")
    return dim


def _when(entry: Mapping[str, object], loc: Loc, ctx: _Context, issues: Issues) -> When | None:
    if "when" not in entry:
        return None
    raw = entry["when"]
    at: Loc = (*loc, "when")
    if not isinstance(raw, Mapping) or len(raw) != 1:
        issues.add(
            at,
            f"must be an object naming one dimension and its values, such as "
            f'{{"model": ["cnn"]}}, got {show(raw)}',
        )
        return None
    ((key, values),) = raw.items()
    if not isinstance(values, list) or not values:
        issues.add((*at, str(key)), f"must be a non-empty list of values, got {show(values)}")
        return None
    return When(ctx.prefix + str(key), str(key), tuple(values), at)


_STRUCTURES = ("oneOf", "repeat")
MAX_REPEAT = 64
"""The largest count of a ``repeat``: each copy of its block is a set of dimensions."""


def _structure(
    name: str, entry: Mapping[str, object], ctx: _Context, out: list[Pending], issues: Issues
) -> None:
    """A ``oneOf`` (a categorical dimension named ``name`` whose every option is a
    subspace used only when it is chosen) or a ``repeat`` (an integer count named
    ``name`` and ``count`` copies of a block, copy ``i`` named ``name.i.<key>``)."""
    loc: Loc = (*ctx.where, name)
    full = ctx.prefix + name
    method = entry["method"]
    if method == "oneOf":
        _check_keys(entry, loc, ("method", "options"), ("when",), "oneOf", issues)
        options = entry.get("options")
        if not isinstance(options, Mapping) or not options:
            if "options" in entry:
                issues.add(
                    (*loc, "options"),
                    f"must be a non-empty object of named subspaces, got {show(options)}",
                )
            return
        fields: Fields = {"categories": (list(options), (*loc, "options"))}
        dim = build_dimension(full, "categorical", fields, issues)
        when = _when(entry, loc, ctx, issues)
        if dim is None:
            return
        out.append(_pending(dim, loc, ctx, when))
        for option, subspace in options.items():
            where: Loc = (*loc, "options", option)
            if not isinstance(subspace, Mapping):
                issues.add(
                    where, f"must be an object of dimensions (may be empty), got {show(subspace)}"
                )
                continue
            inner = _Context(ctx.prefix, where, (*ctx.scope, f"{full}={option}"), (full, (option,)))
            _subspace(subspace, inner, out, issues)
        return
    _check_keys(entry, loc, ("method", "count", "block"), ("when",), "repeat", issues)
    count = entry.get("count")
    block = entry.get("block")
    if "count" in entry and not isinstance(count, Mapping):
        issues.add((*loc, "count"), f'must be an object {{"low": n, "high": m}}, got {show(count)}')
    if "block" in entry and (not isinstance(block, Mapping) or not block):
        issues.add((*loc, "block"), f"must be a non-empty object of dimensions, got {show(block)}")
    if not isinstance(count, Mapping) or not isinstance(block, Mapping) or not block:
        return
    where = (*loc, "count")
    _check_keys(count, where, ("low", "high"), (), "a repeat count", issues)
    bounds: Fields = {k: (count[k], (*where, k)) for k in ("low", "high") if k in count}
    dim = build_dimension(full, "uniformint", bounds, issues)
    when = _when(entry, loc, ctx, issues)
    if dim is None:
        return
    assert dim.low is not None and dim.high is not None
    if dim.low < 0 or dim.high > MAX_REPEAT:
        issues.add(where, f"must lie within [0, {MAX_REPEAT}], got [{dim.low}, {dim.high}]")
        return
    out.append(_pending(dim, loc, ctx, when))
    before = issues.count
    for copy in range(int(dim.high)):
        used = tuple(range(max(copy + 1, int(dim.low)), int(dim.high) + 1))
        inner = _Context(
            f"{full}.{copy}.", (*loc, "block"), (*ctx.scope, f"{full}.{copy}"), (full, used)
        )
        # Every copy is read from the same JSON: its problems are reported once.
        _subspace(block, inner, out, issues if copy == 0 else Issues())
        if issues.count > before:
            return


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
    _check_keys(entry, (name,), ("method", "dimension"), ("default",), "an entry", issues)
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
    dim = build_dimension(name, method, fields, issues)
    if dim is None or "default" not in entry:
        return dim
    default = entry["default"]
    problem = value_issue(dim, default)
    if problem:
        issues.add((name, "default"), problem)
        return None
    return dim.model_copy(update={"has_default": True, "default": default})


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
