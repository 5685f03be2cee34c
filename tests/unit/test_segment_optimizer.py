"""The kept optimiser of a segment (``SegmentOptimizer``): built once, then told deltas.

A kept optimiser must propose what a rebuilt one would for the samplers that hold no
state of their own, be deterministic for every adapter, hand every result to Nevergrad's
own pending-ask machinery, and refuse to go on when the stored points are not the ones
it proposed."""

from __future__ import annotations

from typing import Any

import pytest

from services.steering.sampler import SegmentOptimizer, StaleOptimizerError, draw
from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import SteeringConfig
from shared.searchspace import canonical_key
from tests.unit.test_algorithms import ADAPTERS, SPACE, needs_torch, objective

SEED = 5


def stored(index: int, params: dict[str, Any]) -> Point:
    return Point(
        id=f"t.main.{index}",
        task_id="t",
        segment="main",
        index=index,
        params=params,
        key=canonical_key(params),
    )


def settled(point: Point, *, failed: bool = False) -> Point:
    if failed:
        return point.model_copy(update={"status": PointStatus.FAILED, "loss": 1e10})
    return point.model_copy(
        update={"status": PointStatus.EVALUATED, "loss": objective(point.params)}
    )


def make(steering: SteeringConfig, history: list[Point]) -> SegmentOptimizer:
    return SegmentOptimizer(SPACE, history, steering=steering, seed=SEED, parallelism=2, budget=40)


def run_kept(steering: SteeringConfig, rounds: int, per_round: int = 2) -> list[Point]:
    """A segment driven by one kept optimiser: each round draws, stores, then settles
    the round's points (every fifth one failed)."""
    optimizer = make(steering, [])
    history: list[Point] = []
    for _ in range(rounds):
        new = [stored(len(history) + i, p) for i, p in enumerate(optimizer.draw(per_round).points)]
        history += new
        done = [settled(p, failed=p.index % 5 == 4) for p in new]
        history[-len(done) :] = done
        optimizer.settle(done)
    return history


@pytest.mark.parametrize("algorithm", ["tpe", "random"])
def test_a_kept_stateless_sampler_draws_what_a_rebuild_draws(algorithm: str) -> None:
    steering = SteeringConfig(
        library="optuna",
        algorithm=algorithm,
        args={"n_startup_trials": 3} if algorithm == "tpe" else {},
    )
    optimizer = make(steering, [])
    history: list[Point] = []
    for _ in range(6):
        rebuilt = draw(SPACE, history, 2, steering=steering, seed=SEED, parallelism=2, budget=40)
        kept = optimizer.draw(2)
        assert kept.points == rebuilt.points
        new = [settled(stored(len(history) + i, p)) for i, p in enumerate(kept.points)]
        history += new
        optimizer.settle(new)


@pytest.mark.parametrize(("library", "algorithm"), ADAPTERS)
def test_a_kept_optimizer_is_deterministic(library: str, algorithm: str) -> None:
    needs_torch(algorithm)
    steering = SteeringConfig(library=library, algorithm=algorithm)
    first = run_kept(steering, rounds=5)
    second = run_kept(steering, rounds=5)
    assert [p.params for p in first] == [p.params for p in second]
    assert len(first) == 10
    assert len({p.key for p in first}) == 10  # no point proposed twice


def test_nevergrad_is_told_every_settled_point_through_its_own_asks() -> None:
    steering = SteeringConfig(library="nevergrad", algorithm="OnePlusOne")
    optimizer = make(steering, [])
    history: list[Point] = []
    for _ in range(8):
        new = [stored(len(history) + i, p) for i, p in enumerate(optimizer.draw(2).points)]
        history += new
        optimizer.settle([settled(p) for p in new])
    ng = optimizer._proposer._opt  # type: ignore[attr-defined]  # Nevergrad's own counters
    assert ng.num_tell == 16
    assert ng.num_ask - ng.num_tell == 0  # nothing left in flight


def test_open_points_stay_in_flight_until_they_settle() -> None:
    steering = SteeringConfig(library="nevergrad", algorithm="TwoPointsDE")
    optimizer = make(steering, [])
    first = [stored(i, p) for i, p in enumerate(optimizer.draw(3).points)]
    assert optimizer.open_indices == [0, 1, 2]
    optimizer.settle([settled(first[1])])
    assert optimizer.open_indices == [0, 2]
    ng = optimizer._proposer._opt  # type: ignore[attr-defined]
    assert ng.num_ask - ng.num_tell == 2
    optimizer.settle([first[0]])  # still open: ignored
    assert optimizer.open_indices == [0, 2]


def test_rebuilt_from_history_it_goes_on_at_the_next_index() -> None:
    steering = SteeringConfig(library="optuna", algorithm="tpe")
    history = run_kept(steering, rounds=3)
    history.append(stored(len(history), {"x": 0.5, "lr": 1e-3, "n": 4, "act": "relu"}))
    optimizer = make(steering, history)
    assert optimizer.count == 7
    assert optimizer.open_indices == [6]
    new = optimizer.draw(2).points
    assert len(new) == 2 and optimizer.count == 9
    assert canonical_key(new[0]) not in {p.key for p in history}


def test_a_point_it_did_not_propose_makes_it_stale() -> None:
    steering = SteeringConfig(library="optuna", algorithm="tpe")
    optimizer = make(steering, [])
    optimizer.draw(2)
    intruder = settled(stored(2, {"x": 0.1, "lr": 1e-2, "n": 3, "act": "tanh"}))
    with pytest.raises(StaleOptimizerError):
        optimizer.settle([intruder])


def test_the_first_list_loss_makes_a_single_objective_optimizer_stale() -> None:
    steering = SteeringConfig(library="optuna", algorithm="tpe")
    optimizer = make(steering, [])
    [p] = [stored(0, q) for q in optimizer.draw(1).points]
    two_losses = p.model_copy(update={"status": PointStatus.EVALUATED, "loss": [0.1, 0.2]})
    with pytest.raises(StaleOptimizerError):
        optimizer.settle([two_losses])


def test_excluded_failures_are_dropped_not_told() -> None:
    steering = SteeringConfig(library="optuna", algorithm="tpe")
    optimizer = SegmentOptimizer(
        SPACE, [], steering=steering, seed=SEED, parallelism=2, failed_points="exclude"
    )
    points = [stored(i, p) for i, p in enumerate(optimizer.draw(2).points)]
    optimizer.settle([settled(points[0], failed=True), settled(points[1])])
    study = optimizer._proposer._study  # type: ignore[attr-defined]
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL"]
    assert optimizer.open_indices == []
