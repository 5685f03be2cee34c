"""The Pareto front of a multi-objective task's evaluated points (pure).

A point dominates another when it is at least as good in every objective and better in
one, "good" following each objective's direction. The front is every evaluated point
no other evaluated point dominates; points with equal losses are all kept.

:func:`fold` adds one point to a front already known, which is how the stored summaries
keep a segment's front as results arrive (O(front) per point); folding the points in
order gives what :func:`pareto_front` gives for them at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

T = TypeVar("T")
Direction = Literal["minimize", "maximize"]

FrontMember = tuple[str, list[float], dict[str, Any]]
"""A point on a stored front: its id, its losses and its params."""


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Both already turned into minimisations."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def _signed(losses: Sequence[float], directions: Sequence[Direction]) -> list[float]:
    return [v if d == "minimize" else -v for d, v in zip(directions, losses, strict=True)]


def fold(
    front: list[tuple[T, list[float]]],
    item: T,
    losses: Sequence[float],
    directions: Sequence[Direction],
) -> list[tuple[T, list[float]]]:
    """``front`` (non-dominated (item, losses) pairs, in the order they came) with
    ``item`` added: unchanged if a member dominates it, else without the members it
    dominates and with it last. A loss of another length than ``directions`` is left out.
    """
    if len(losses) != len(directions):
        return front
    cost = _signed(losses, directions)
    members = [(member, _signed(other, directions)) for member, other in front]
    if any(_dominates(other, cost) for _, other in members):
        return front
    kept = [
        pair for pair, (_, other) in zip(front, members, strict=True) if not _dominates(cost, other)
    ]
    return [*kept, (item, list(losses))]


def pareto_front(
    candidates: Sequence[tuple[T, Sequence[float]]], directions: Sequence[Direction]
) -> list[T]:
    """The non-dominated items of ``candidates`` ((item, losses) pairs), in input order.

    Candidates whose loss has another length than ``directions`` are left out.
    O(n²) comparisons: fine for the thousands of points a task holds.
    """
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    costs = [
        (item, [s * v for s, v in zip(signs, losses, strict=True)])
        for item, losses in candidates
        if len(losses) == len(signs)
    ]
    return [
        item
        for item, cost in costs
        if not any(_dominates(other, cost) for _, other in costs if other is not cost)
    ]
