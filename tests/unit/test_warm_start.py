"""Warm start: which points of earlier tasks fit a new space, and that they are told to
the new segment's optimiser before its first draw without being stored points."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.steering.algorithms.optuna_samplers import OptunaProposer
from services.steering.sampler import SegmentOptimizer
from services.steering.warmstart import (
    NOT_SETTLED,
    NOT_YOURS,
    OTHER_NAMES,
    OUT_OF_BOUNDS,
    UNKNOWN_TASK,
    refusal,
    warm_start,
)
from shared.domain.models import Point, PointStatus, Task
from shared.domain.taskconfig import SteeringConfig, TaskConfig
from shared.searchspace import canonical_key, parse_search_space

SPACE = parse_search_space(
    {
        "x": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
        "c": {"method": "categorical", "dimension": {"categories": ["a", "b"]}},
    }
)


def point(index: int, params: dict[str, Any], loss: float | None = 1.0, **extra: Any) -> Point:
    status = PointStatus.UNEVALUATED if loss is None else PointStatus.EVALUATED
    return Point(
        id=f"old.{index}",
        task_id="task_old",
        segment="main",
        index=index,
        params=params,
        key=canonical_key(params),
        status=extra.pop("status", status),
        loss=loss,
    )


EARLIER = [
    point(0, {"x": 0.2, "c": "a"}, 0.5),
    point(1, {"x": 0.7, "c": "b"}, 0.25),
    point(2, {"x": 1.5, "c": "a"}, 0.1),  # outside the new bounds
    point(3, {"x": 0.3, "c": "z"}, 0.1),  # not a category of the new space
    point(4, {"x": 0.3, "c": "a", "lr": 0.1}, 0.1),  # another name
    point(5, {"x": 0.3}, 0.1),  # a name missing
    point(6, {"x": 0.4, "c": "a"}, None),  # never evaluated
    point(7, {"x": 0.9, "c": "b"}, 1e10, status=PointStatus.FAILED),
]


def test_compatible_points_are_told_and_the_others_counted_by_reason() -> None:
    found = warm_start(SPACE, EARLIER, failed_points="large_loss", directions=("minimize",))
    assert [(o.params, o.losses) for o in found.observations] == [
        ({"x": 0.2, "c": "a"}, (0.5,)),
        ({"x": 0.7, "c": "b"}, (0.25,)),
        ({"x": 0.9, "c": "b"}, (1e10,)),  # a failure, told the large loss
    ]
    assert found.skipped == {OUT_OF_BOUNDS: 2, OTHER_NAMES: 2, NOT_SETTLED: 1}


def test_excluded_failures_are_skipped_as_not_evaluated() -> None:
    found = warm_start(SPACE, EARLIER, failed_points="exclude", directions=("minimize",))
    assert found.told == 2
    assert found.skipped[NOT_SETTLED] == 2


def test_conditional_points_fit_by_their_active_names() -> None:
    space = parse_search_space(
        {
            "m": {
                "method": "oneOf",
                "options": {
                    "p": {"u": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
                    "q": {},
                },
            }
        }
    )
    earlier = [point(0, {"m": "p", "u": 0.5}), point(1, {"m": "q"}), point(2, {"m": "q", "u": 0.5})]
    found = warm_start(space, earlier, failed_points="large_loss", directions=("minimize",))
    assert [o.params for o in found.observations] == [{"m": "p", "u": 0.5}, {"m": "q"}]
    assert found.skipped == {OTHER_NAMES: 1}


def test_only_the_owners_own_tasks_warm_start() -> None:
    task = Task(id="task_old", owner="alice", config=TaskConfig(evaluationExec="true"))
    assert refusal(task, "alice") is None
    assert refusal(task, "bob") == NOT_YOURS
    assert refusal(None, "alice") == UNKNOWN_TASK


def test_warm_points_are_told_before_the_first_draw_and_are_not_stored_points() -> None:
    found = warm_start(SPACE, EARLIER, failed_points="large_loss", directions=("minimize",))
    optimizer = SegmentOptimizer(
        SPACE, [], steering=SteeringConfig(algorithm="tpe"), seed=1, warm=found.observations
    )
    assert optimizer.count == 0  # the new task's first point is still index 0
    proposer = optimizer._proposer
    assert isinstance(proposer, OptunaProposer)
    told = [t.params for t in proposer._study.get_trials(deepcopy=False)]
    assert told == [o.params for o in found.observations]
    drawn = optimizer.draw(2)
    assert len(drawn.points) == 2
    assert optimizer.count == 2  # only the new task's own points count


def test_warm_start_from_is_a_bounded_list_of_task_ids() -> None:
    config = TaskConfig(evaluationExec="true", warmStartFrom=["task_a", "task_b"])
    assert config.warmStartFrom == ["task_a", "task_b"]


def test_a_steering_program_is_not_warm_started() -> None:
    with pytest.raises(ValidationError, match="warmStartFrom: only the built-in optimisers"):
        TaskConfig(evaluationExec="true", steeringExec="python opt.py", warmStartFrom=["task_a"])


def test_a_proposal_equal_to_a_warm_point_is_drawn_again() -> None:
    space = parse_search_space(
        {"c": {"method": "categorical", "dimension": {"categories": ["a", "b", "c"]}}}
    )
    told = [point(0, {"c": "a"}, 0.5), point(1, {"c": "b"}, 0.25)]
    found = warm_start(space, told, failed_points="large_loss", directions=("minimize",))
    for seed in range(5):
        optimizer = SegmentOptimizer(
            space,
            [],
            steering=SteeringConfig(algorithm="random"),
            seed=seed,
            warm=found.observations,
        )
        assert optimizer.draw(1).points == [{"c": "c"}]
