"""When a steering program is asked, with which %NUM_POINTS, and what its empty answer
means (pure rules; the programs themselves run in tests/integration/test_idds_counting.py)."""

from __future__ import annotations

from typing import Any

import pytest

from services.steering.idds_format import SegmentInput, select_points
from services.steering.logic import SegmentCounts, container_round, settled
from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import TaskConfig
from shared.searchspace import canonical_key, parse_search_space

SPACE = parse_search_space({"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}})


def cfg(**over: Any) -> TaskConfig:
    return TaskConfig.model_validate({"evaluationExec": "run", "maxPoints": 8, **over})


@pytest.mark.parametrize(
    ("over", "total", "open_", "num_points"),
    [
        ({}, 0, 0, 2),  # no point open: a round, %NUM_POINTS = nPointsPerIteration
        ({}, 2, 1, 0),  # minUnevaluatedPoints 0: wait until none is open
        ({"nPointsPerIteration": 3, "minUnevaluatedPoints": 2}, 0, 0, 3),
        ({"nPointsPerIteration": 3, "minUnevaluatedPoints": 2}, 3, 2, 0),
        # fewer open than minUnevaluatedPoints: asked with nPointsPerIteration, not 3 - 2
        ({"nPointsPerIteration": 3, "minUnevaluatedPoints": 2}, 3, 1, 3),
        ({"nPointsPerIteration": 3, "minUnevaluatedPoints": 2}, 7, 1, 3),
        ({"nPointsPerIteration": 3, "minUnevaluatedPoints": 2}, 8, 0, 0),  # maxPoints
    ],
)
def test_a_round_passes_points_per_iteration_as_idds_does(
    over: dict[str, Any], total: int, open_: int, num_points: int
) -> None:
    assert container_round(cfg(**over), SegmentCounts(total=total, open=open_)) == num_points


def point(i: int, status: PointStatus) -> Point:
    params = {"x": i / 10}
    loss = 0.5 if status is PointStatus.EVALUATED else None
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


def outcome(history: list[Point], items: list[dict[str, Any]], num_points: int = 3) -> Any:
    segment = SegmentInput(model_id=0, space=SPACE, history=history, num_points=num_points)
    selection = select_points([(0, i) for i in items], [segment], max_points=8, segmented=False)
    return selection.segments[0]


def test_an_empty_answer_while_points_are_open_means_nothing_new_yet() -> None:
    history = [point(0, PointStatus.EVALUATED), point(1, PointStatus.PENDING)]
    got = outcome(history, [])
    assert got.waiting and not got.search_over and not got.container_ended


def test_an_empty_answer_with_no_point_open_ends_the_search() -> None:
    history = [point(0, PointStatus.EVALUATED), point(1, PointStatus.FAILED)]
    got = outcome(history, [])
    assert got.container_ended and got.search_over and not got.waiting


def test_only_duplicates_of_open_points_is_nothing_new_too() -> None:
    history = [point(0, PointStatus.PENDING)]
    got = outcome(history, [{"x": 0.0}])
    assert got.points == [] and got.waiting and not got.search_over


def test_new_points_are_taken_up_to_num_points_whatever_is_open() -> None:
    history = [point(0, PointStatus.PENDING)]
    got = outcome(history, [{"x": 0.5}, {"x": 0.6}, {"x": 0.7}, {"x": 0.8}])
    assert [p["x"] for p in got.points] == [0.5, 0.6, 0.7]
    assert not got.waiting and not got.search_over


def test_settled_counts_points_with_a_result() -> None:
    statuses = [PointStatus.EVALUATED, PointStatus.FAILED, PointStatus.PENDING]
    assert settled([point(i, s) for i, s in enumerate([*statuses, PointStatus.UNEVALUATED])]) == 2
