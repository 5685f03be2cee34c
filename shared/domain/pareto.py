"""The Pareto front of a multi-objective task's evaluated points (pure).

A point dominates another when it is at least as good in every objective and better in
one, "good" following each objective's direction. The front is every evaluated point
no other evaluated point dominates; points with equal losses are all kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

T = TypeVar("T")
Direction = Literal["minimize", "maximize"]


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Both already turned into minimisations."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


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
