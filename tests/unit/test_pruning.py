"""Optuna's pruners on stored trial curves (services/api/pruning.py)."""

from __future__ import annotations

import pytest

from services.api.pruning import build_pruner, should_prune
from shared.domain.models import Point, PointStatus
from shared.store.curves import Trial


def trial(index: int, status: PointStatus, curve: list[float], loss: float | None) -> Trial:
    point = Point(
        id=f"s.main.{index}",
        task_id="s",
        segment="main",
        index=index,
        params={},
        key=str(index),
        status=status,
        loss=loss,
    )
    return Trial(point=point, intermediate=dict(enumerate(curve)))


GOOD = [1.0, 0.5, 0.3, 0.2]
HISTORY = [trial(i, PointStatus.EVALUATED, GOOD, 0.2) for i in range(4)] + [
    trial(4, PointStatus.FAILED, [], None),
    trial(5, PointStatus.PENDING, [0.9], None),
]


def verdict(name: str, args: dict[str, object], curve: list[float]) -> bool:
    trials = [*HISTORY, trial(6, PointStatus.PENDING, curve, None)]
    return should_prune(name, args, "minimize", trials, 6, study_name="s")


def test_median() -> None:
    args: dict[str, object] = {"n_startup_trials": 3, "n_warmup_steps": 1}
    assert verdict("MedianPruner", args, [9.0, 9.0, 9.0]) is True
    assert verdict("MedianPruner", args, [9.0]) is False  # warm-up
    assert verdict("MedianPruner", args, [0.5, 0.1, 0.1]) is False


def test_threshold_and_nop() -> None:
    assert verdict("ThresholdPruner", {"upper": 5.0}, [1.0, 6.0]) is True
    assert verdict("ThresholdPruner", {"upper": 5.0}, [1.0, 4.0]) is False
    assert verdict("NopPruner", {}, [1e9, 1e9]) is False


def test_hyperband_is_stable_between_calls() -> None:
    args: dict[str, object] = {"min_resource": 1, "max_resource": 4, "reduction_factor": 2}
    first = verdict("HyperbandPruner", args, [9.0, 9.0, 9.0])
    assert all(verdict("HyperbandPruner", args, [9.0, 9.0, 9.0]) is first for _ in range(3))


def test_no_curve_no_pruning() -> None:
    assert verdict("ThresholdPruner", {"upper": 0.0}, []) is False


def test_bad_pruner() -> None:
    with pytest.raises(ValueError, match="unknown pruner"):
        build_pruner("Nope", {})
    with pytest.raises(ValueError, match="MedianPruner"):
        build_pruner("MedianPruner", {"no_such_arg": 1})
