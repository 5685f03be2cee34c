"""Initial points: the points a user wants evaluated first, checked against the space.

A task's ``initialPoints`` are evaluated before the optimiser draws (as Optuna's
``enqueue_trial``): they are the segment's first points and count against
``maxPoints``. An entry may leave out a parameter whose dimension has a ``default``; the
default fills it in. When every dimension a point needs has a default, the point made
of the defaults alone is evaluated first too (unless an initial point equals it). In a
conditional space an entry gives the values of its active parameters; a default fills
in an active one only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.searchspace.conditions import same_value
from shared.searchspace.model import JsonScalar, SearchSpace, SearchSpaceError, SearchSpaceIssue
from shared.searchspace.points import canonical_key, validate_point

MAX_INITIAL_POINTS = 1_000


def complete_point(space: SearchSpace, given: Mapping[str, object]) -> dict[str, object]:
    """``given`` with every missing active parameter that has a default filled in, in
    the space's order (a parent before what depends on it); other names kept."""
    point: dict[str, object] = {}
    for dim in space.dimensions:
        if dim.parent is not None:
            if dim.parent not in point:
                continue
            if not any(same_value(point[dim.parent], v) for v in dim.parent_values):
                continue
        if dim.name in given:
            point[dim.name] = given[dim.name]
        elif dim.has_default:
            point[dim.name] = dim.default
    point.update({k: v for k, v in given.items() if k not in point})
    return point


def default_point(space: SearchSpace) -> dict[str, object] | None:
    """The point of the defaults alone, or None when some dimension it needs has none."""
    point = complete_point(space, {})
    return point if point and not validate_point(space, point) else None


def initial_points(
    space: SearchSpace, given: Sequence[Mapping[str, JsonScalar]]
) -> list[dict[str, object]]:
    """The segment's initial points, in the order evaluated: the default point first
    (if there is one and no entry equals it), then each entry completed by the
    defaults. Raises :class:`SearchSpaceError` locating each problem at
    ``(entry index, parameter name)``."""
    issues: list[SearchSpaceIssue] = []
    points: list[dict[str, object]] = []
    for index, entry in enumerate(given):
        point = complete_point(space, entry)
        for problem in validate_point(space, point):
            name, _, message = problem.partition(": ")
            loc = (index, name) if name in point or name in space.names else (index,)
            issues.append(SearchSpaceIssue(loc, message if loc != (index,) else problem))
        points.append(point)
    if issues:
        raise SearchSpaceError(issues)
    default = default_point(space)
    if default is not None and canonical_key(default) not in {canonical_key(p) for p in points}:
        points.insert(0, default)
    return points
