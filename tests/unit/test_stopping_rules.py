"""The stopping rules as pure decisions: targetLoss, stopAfterNoImprovement, maxWallTime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.jobbuilder.stopping import Evaluated, since_improvement, stop_reason
from shared.domain.taskconfig import TaskConfig

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _config(**over: Any) -> TaskConfig:
    return TaskConfig.model_validate({"evaluationExec": "true", **over})


def _points(*losses: float) -> list[Evaluated]:
    return [Evaluated(f"p{i}", loss) for i, loss in enumerate(losses)]


def _reason(config: TaskConfig, *losses: float, seconds: float = 0) -> str | None:
    stop = stop_reason(
        config, started=T0, now=T0 + timedelta(seconds=seconds), evaluated=_points(*losses)
    )
    return None if stop is None else stop.reason


def test_target_loss_is_reached_at_or_below_it_when_minimised() -> None:
    config = _config(targetLoss=0.1)
    assert _reason(config, 0.5, 0.2) is None
    assert _reason(config, 0.5, 0.1) == (
        "targetLoss 0.1 reached: best loss 0.1 (point p1) after 2 evaluated points"
    )


def test_target_loss_respects_a_maximised_direction() -> None:
    config = _config(targetLoss=0.9, steering={"directions": ["maximize"]})
    assert _reason(config, 0.1, 0.5) is None
    assert _reason(config, 0.1, 0.95, 0.3) == (
        "targetLoss 0.9 reached: best loss 0.95 (point p1) after 3 evaluated points"
    )


def test_no_improvement_counts_points_since_the_last_better_best() -> None:
    assert since_improvement(_points(0.5, 0.6, 0.4, 0.7, 0.4), "minimize") == 2
    assert since_improvement(_points(0.5, 0.6, 0.7), "maximize") == 0
    config = _config(stopAfterNoImprovement=2)
    assert _reason(config, 0.5, 0.6) is None
    assert _reason(config, 0.5, 0.6, 0.5) == (
        "stopAfterNoImprovement: no better loss in the last 2 evaluated points; "
        "best loss 0.5 (point p0) after 3 evaluated points"
    )


def test_wall_time_counts_from_the_start_and_fails_a_task_with_nothing_evaluated() -> None:
    config = _config(maxWallTime=60)
    assert _reason(config, 0.3, seconds=59.9) is None
    assert _reason(config, 0.3, seconds=61) == (
        "maxWallTime (60 s) reached after 61 s: best loss 0.3 (point p0) after 1 evaluated point"
    )
    stop = stop_reason(config, started=T0, now=T0 + timedelta(seconds=61), evaluated=[])
    assert stop is not None and stop.evaluated == 0
    assert stop.reason == "maxWallTime (60 s) reached after 61 s before any point was evaluated"


def test_no_rule_no_stop() -> None:
    assert _reason(_config(), 0.0, 0.0, 0.0, seconds=10**9) is None


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"targetLoss": 0.1}, "targetLoss"),
        ({"stopAfterNoImprovement": 3}, "stopAfterNoImprovement"),
    ],
)
def test_loss_rules_are_refused_for_several_objectives(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _config(steering={"algorithm": "nsga2", "directions": ["minimize", "minimize"]}, **over)
    assert f"{field}: applies to single-objective tasks only" in str(caught.value)


@pytest.mark.parametrize(
    "over",
    [
        {"maxWallTime": 0},
        {"maxWallTime": float("inf")},
        {"targetLoss": float("nan")},
        {"stopAfterNoImprovement": 0},
    ],
)
def test_bad_values_are_refused(over: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        _config(**over)
    assert next(iter(over)) in str(caught.value)
