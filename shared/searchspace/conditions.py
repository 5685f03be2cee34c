"""Conditional spaces: which dimensions a point uses, and checking the dependency graph.

In a conditional space each dimension may depend on one other, its ``parent`` (a
categorical or integer dimension): it is *active* only while the parent is active and
takes one of ``parent_values``. The dependencies form a forest, so a point of the space
holds exactly its active dimensions: a choice between model families holds the
parameters of the family chosen and no others; a block repeated ``n`` times holds ``n``
copies. :mod:`shared.searchspace.parse` reads the JSON forms (``when``, ``oneOf``,
``repeat``, docs/input.md) into :class:`Pending` dimensions, and :func:`resolve` checks
them as a whole: every name once, every ``when`` naming a dimension of its own
subspace with values it can take, no cycle; then orders them so that a parent comes
before what depends on it (what Optuna's define-by-run needs).
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass

from shared.searchspace.model import Dimension, JsonScalar, Loc, SearchSpace, show
from shared.searchspace.values import Issues

Scope = tuple[str, ...]
"""Where a dimension was written: ``()`` at the top, then one step per option of a
``oneOf`` or block of a ``repeat`` it is inside."""


@dataclass(frozen=True)
class When:
    """A ``when`` as written: the parent's full name, its allowed values, and where."""

    parent: str
    key: str
    values: tuple[object, ...]
    loc: Loc


@dataclass(frozen=True)
class Pending:
    """A parsed dimension, with its implied condition (from the ``oneOf`` option or
    ``repeat`` block it is in) already set, and its ``when`` still to check."""

    dim: Dimension
    loc: Loc
    scope: Scope
    when: When | None = None


def same_value(a: object, b: object) -> bool:
    """Equal and of the same JSON type (``1.0`` is ``1``, ``true`` is not)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool) and _is_number(a) == _is_number(b)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def active_names(space: SearchSpace, params: Mapping[str, object]) -> set[str]:
    """The dimensions that ``params`` uses: every unconditional one, and each conditional
    one whose parent is active with one of its values."""
    active: set[str] = set()
    for dim in space.dimensions:
        if dim.parent is None or (
            dim.parent in active
            and dim.parent in params
            and any(same_value(params[dim.parent], v) for v in dim.parent_values)
        ):
            active.add(dim.name)
    return active


def drop_inactive(space: SearchSpace, params: Mapping[str, object]) -> dict[str, object]:
    """``params`` without the values of dimensions that are not active (what a steering
    program handed the flat form writes for the branches not taken); names not in the
    space stay, for :func:`~shared.searchspace.points.validate_point` to report."""
    if not space.conditional:
        return dict(params)
    active = active_names(space, params)
    names = set(space.names)
    return {k: v for k, v in params.items() if k in active or k not in names}


def flatten(space: SearchSpace) -> SearchSpace:
    """Every dimension, unconditional: the flat form of the space for programs that know
    no conditions (a value for each, of which :func:`drop_inactive` keeps the used)."""
    if not space.conditional:
        return space
    return SearchSpace(
        dimensions=tuple(
            d.model_copy(update={"parent": None, "parent_values": ()}) for d in space.dimensions
        )
    )


def children(space: SearchSpace) -> dict[str, list[Dimension]]:
    """The dimensions that depend on each dimension, in space order."""
    out: dict[str, list[Dimension]] = {}
    for dim in space.dimensions:
        if dim.parent is not None:
            out.setdefault(dim.parent, []).append(dim)
    return out


def parent_domain(dim: Dimension) -> tuple[JsonScalar, ...]:
    """The values a parent can take, once each: its categories, or every integer of its
    range (a ``repeat`` count)."""
    if dim.kind == "categorical":
        return dim.distinct_choices
    assert dim.low is not None and dim.high is not None
    return tuple(range(int(dim.low), int(dim.high) + 1))


MAX_CONDITION_VALUES = 1_000
"""An integer dimension may be a condition only if it has at most this many values."""


def resolve(pending: list[Pending], issues: Issues) -> tuple[Dimension, ...]:
    """Check the dimensions as a whole and order them parents first; problems go to
    ``issues`` (the caller raises when there are any)."""
    where: dict[str, Pending] = {}
    for item in pending:
        earlier = where.get(item.dim.name)
        if earlier is not None:
            issues.add(
                item.loc, f"the name {item.dim.name!r} is also used at {_dotted(earlier.loc)}"
            )
        else:
            where[item.dim.name] = item
    dims: dict[str, Dimension] = {}
    for name, item in where.items():
        dim = item.dim
        if item.when is not None:
            dim = _apply_when(item, where, issues) or dim
        dims[name] = dim
    _check_cycles(dims, where, issues)
    if issues.count:
        return ()
    return _parents_first(list(dims.values()), dims)


def _apply_when(item: Pending, where: dict[str, Pending], issues: Issues) -> Dimension | None:
    when = item.when
    assert when is not None
    parent = where.get(when.parent)
    if parent is None or parent.scope != item.scope:
        issues.add(
            (*when.loc, when.key),
            f"no dimension named {when.key!r} beside {item.dim.name!r}: a condition names "
            "a dimension of the same subspace",
        )
        return None
    if when.parent == item.dim.name:
        issues.add((*when.loc, when.key), f"dependency cycle: {item.dim.name} -> {item.dim.name}")
        return None
    pdim = parent.dim
    if pdim.kind == "float":
        issues.add(
            (*when.loc, when.key),
            f"{when.key} is a {pdim.method} dimension; a condition needs a categorical or "
            "integer one",
        )
        return None
    if pdim.kind == "int":
        assert pdim.low is not None and pdim.high is not None
        if pdim.high - pdim.low + 1 > MAX_CONDITION_VALUES:
            issues.add(
                (*when.loc, when.key),
                f"{when.key} has more than {MAX_CONDITION_VALUES} values; a condition needs "
                "a categorical dimension or a smaller integer range",
            )
            return None
    domain = parent_domain(pdim)
    allowed: list[JsonScalar] = []
    for index, value in enumerate(when.values):
        match = next((d for d in domain if same_value(d, value)), _MISSING)
        if match is _MISSING:
            issues.add(
                (*when.loc, when.key, index),
                f"{show(value)} is not a value of {when.key} ({_domain_text(pdim)})",
            )
        else:
            allowed.append(match)  # type: ignore[arg-type]
    if len(allowed) != len(when.values):
        return None
    return item.dim.model_copy(update={"parent": when.parent, "parent_values": tuple(allowed)})


_MISSING = object()


def _domain_text(dim: Dimension) -> str:
    if dim.kind == "categorical":
        return f"one of {show(list(dim.distinct_choices))}"
    return f"an integer in [{dim.low}, {dim.high}]"


def _check_cycles(dims: dict[str, Dimension], where: dict[str, Pending], issues: Issues) -> None:
    graph: dict[str, set[str]] = {
        name: {dim.parent}
        for name, dim in dims.items()
        if dim.parent is not None and dim.parent != name
    }
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        cycle: list[str] = list(exc.args[1])[::-1]
        first = where[cycle[0]]
        loc = first.when.loc if first.when is not None else first.loc
        issues.add(loc, "dependency cycle: " + " -> ".join(cycle) + " (each depends on the next)")


def _parents_first(order: list[Dimension], dims: dict[str, Dimension]) -> tuple[Dimension, ...]:
    """The dimensions in the order written, each moved after its parent when it came
    before it (a ``when`` may name a dimension written further down)."""
    out: list[Dimension] = []
    placed: set[str] = set()

    def place(dim: Dimension) -> None:
        if dim.name in placed:
            return
        if dim.parent is not None:
            place(dims[dim.parent])
        placed.add(dim.name)
        out.append(dim)

    for dim in order:
        place(dim)
    return tuple(out)


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)
