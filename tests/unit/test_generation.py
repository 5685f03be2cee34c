"""phpo's generation semantics and the steering sampler's guarantees."""

from __future__ import annotations

from typing import Any

import pytest

from services.steering.logic import SegmentCounts, points_to_generate
from services.steering.sampler import draw
from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import SteeringConfig, TaskConfig
from shared.searchspace import canonical_key, parse_search_space, validate_point


def cfg(**over: Any) -> TaskConfig:
    return TaskConfig.model_validate({"evaluationExec": "run", **over})


@pytest.mark.parametrize(
    ("over", "total", "open_", "expected"),
    [
        ({}, 0, 0, 2),  # defaults: nPointsPerIteration 2 when nothing is open
        ({}, 2, 1, 0),  # min 0: wait until every point is evaluated
        ({}, 9, 0, 1),  # never beyond maxPoints (10)
        ({}, 10, 0, 0),
        ({"nPointsPerIteration": 6, "minUnevaluatedPoints": 3}, 6, 3, 0),
        ({"nPointsPerIteration": 6, "minUnevaluatedPoints": 3}, 6, 2, 3),
        ({"nPointsPerIteration": 6, "minUnevaluatedPoints": 3, "maxPoints": 7}, 6, 2, 1),
    ],
)
def test_points_to_generate(over: dict[str, Any], total: int, open_: int, expected: int) -> None:
    assert points_to_generate(cfg(**over), SegmentCounts(total=total, open=open_)) == expected


def test_unevaluated_and_pending_points_count_as_open() -> None:
    """phpo's "unevaluated points": not yet evaluated, whether or not a job runs them."""
    statuses = [PointStatus.UNEVALUATED, PointStatus.PENDING, PointStatus.EVALUATED]
    statuses += [PointStatus.FAILED, PointStatus.PENDING]
    history = [point(i, {"x": i}, status, None) for i, status in enumerate(statuses)]
    assert SegmentCounts.of(history) == SegmentCounts(total=5, open=3)


def test_min_unevaluated_must_be_below_points_per_iteration() -> None:
    with pytest.raises(ValueError, match="minUnevaluatedPoints"):
        cfg(nPointsPerIteration=2, minUnevaluatedPoints=2)


SPACE = parse_search_space(
    {
        "x": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
        "c": {"method": "categorical", "dimension": {"categories": ["a", "b", "c"]}},
    }
)


def point(i: int, params: dict[str, Any], status: PointStatus, loss: float | None) -> Point:
    return Point(
        id=f"t.main.{i}",
        task_id="t",
        segment="main",
        index=i,
        params=params,
        key=canonical_key(params),
        status=status,
        loss=loss,
    )


@pytest.mark.parametrize("algorithm", ["tpe", "random"])
def test_suggest_is_deterministic_and_inside_the_space(algorithm: str) -> None:
    history = [
        point(i, {"x": i / 20, "c": "abc"[i % 3]}, PointStatus.EVALUATED, (i / 20 - 0.3) ** 2)
        for i in range(15)
    ]
    steering = SteeringConfig(algorithm=algorithm)
    first = draw(SPACE, history, 4, steering=steering, seed=1).points
    again = draw(SPACE, history, 4, steering=steering, seed=1).points
    assert first == again and len(first) == 4
    assert all(validate_point(SPACE, p) == [] for p in first)


def test_no_duplicate_of_an_open_point() -> None:
    small = parse_search_space(
        {"c": {"method": "categorical", "dimension": {"categories": [1, 2, 3]}}}
    )
    history = [point(0, {"c": 1}, PointStatus.PENDING, None)]
    new = draw(small, history, 5, steering=SteeringConfig(algorithm="random"), seed=0).points
    keys = [canonical_key(p) for p in new]
    assert sorted(p["c"] for p in new) == [2, 3]  # only the distinct points left
    assert len(set(keys)) == len(keys)
