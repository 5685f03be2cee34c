"""Optuna's pruners on stored trial curves (services/api/pruning.py)."""

from __future__ import annotations

import pytest

from services.api.pruning import build_pruner, decide, should_prune
from services.steering.algorithms.observations import observe
from shared.domain.models import Point, PointStatus
from shared.searchspace import parse_search_space
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


def test_percentile() -> None:
    args: dict[str, object] = {"percentile": 25.0, "n_startup_trials": 3}
    assert verdict("PercentilePruner", args, [9.0, 9.0]) is True
    assert verdict("PercentilePruner", args, [0.9, 0.4]) is False


def test_wilcoxon_compares_with_the_best_curve() -> None:
    args: dict[str, object] = {"p_threshold": 0.1, "n_startup_steps": 2}
    assert verdict("WilcoxonPruner", args, [9.0, 9.0, 9.0, 9.0]) is True
    assert verdict("WilcoxonPruner", args, [0.5, 0.2, 0.1, 0.05]) is False


def run_curve(
    history: list[Trial], index: int, curve: list[float], *, remember: bool
) -> tuple[Trial, bool]:
    """Report ``curve`` step by step as the api does, keeping (or dropping) the
    pruner's notes; the trial as stored afterwards and whether it was pruned."""
    args: dict[str, object] = {"min_resource": 1, "reduction_factor": 2}
    current = trial(index, PointStatus.PENDING, [], None)
    for step, value in enumerate(curve):
        current.intermediate[step] = value
        decision = decide(
            "SuccessiveHalvingPruner", args, "minimize", [*history, current], index, study_name="s"
        )
        if remember:
            current.pruner_attrs = decision.attrs
        if decision.prune:
            return current, True
    return current, False


@pytest.mark.parametrize("remember", [True, False])
def test_successive_halving_remembers_rungs_between_calls(remember: bool) -> None:
    history: list[Trial] = []
    for index in range(4):
        done, pruned = run_curve(history, index, [0.5 - 0.1 * index] * 3, remember=remember)
        done.point.status, done.point.loss = PointStatus.EVALUATED, 0.1
        history.append(done)
    bad, pruned = run_curve(history, 4, [9.0, 9.0, 9.0], remember=remember)
    # Without the rung values of the earlier trials SuccessiveHalving has nothing to
    # compare with and never prunes: the notes kept per point are what make it work.
    assert pruned is remember
    if remember:
        assert "completed_rung_0" in bad.pruner_attrs


def test_optimisers_see_a_pruned_point_as_evaluated_with_its_value() -> None:
    space = parse_search_space({"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}})
    pruned = Point(
        id="t.main.0",
        task_id="t",
        segment="main",
        index=0,
        params={"x": 0.5},
        key="0",
        status=PointStatus.EVALUATED,
        loss=52.0,
        pruned_step=2,
    )
    [seen] = observe(space, [pruned], failed_points="exclude", directions=("minimize",))
    assert (dict(seen.params), seen.losses) == ({"x": 0.5}, (52.0,))
