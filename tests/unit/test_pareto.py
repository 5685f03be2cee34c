"""The Pareto front of multi-objective losses."""

from __future__ import annotations

import random

from shared.domain.pareto import fold, pareto_front

LOSSES = {
    "a": [1.0, 5.0],
    "b": [2.0, 3.0],
    "c": [3.0, 3.0],  # dominated by b when both are minimised
    "d": [4.0, 1.0],
    "e": [5.0, 5.0],  # dominated by everything
    "f": [2.0, 3.0],  # equal to b: both stay
    "g": [1.0, 2.0, 3.0],  # another length: left out
}


def test_front_when_minimising_both() -> None:
    front = pareto_front(list(LOSSES.items()), ["minimize", "minimize"])
    assert front == ["a", "b", "d", "f"]


def test_directions_are_per_objective() -> None:
    # a small first and a large second objective: a (1, 5) is best in both
    front = pareto_front(list(LOSSES.items()), ["minimize", "maximize"])
    assert front == ["a"]
    front = pareto_front(list(LOSSES.items()), ["maximize", "maximize"])
    assert front == ["e"]


def test_a_single_point_is_its_own_front() -> None:
    assert pareto_front([("only", [3.0, 4.0])], ["minimize", "minimize"]) == ["only"]
    assert pareto_front([], ["minimize", "minimize"]) == []


def test_folding_points_one_by_one_gives_the_front_of_them_all() -> None:
    rng = random.Random(7)
    for directions in (["minimize", "minimize"], ["minimize", "maximize", "minimize"]):
        points = [(i, [float(rng.randint(0, 9)) for _ in directions]) for i in range(300)]
        front: list[tuple[int, list[float]]] = []
        for item, losses in points:
            front = fold(front, item, losses, directions)
        assert [item for item, _ in front] == pareto_front(points, directions)
    assert fold([], "g", LOSSES["g"], ["minimize", "minimize"]) == []
