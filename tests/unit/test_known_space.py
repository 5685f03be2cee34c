"""TPE and GP are told the segment's search space: they draw what stock Optuna draws,
without walking every trial at each draw to work the space out."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from services.steering.logic import segment_seed
from services.steering.sampler import SegmentOptimizer
from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import SteeringConfig
from shared.searchspace import to_optuna
from tests.unit.test_algorithms import SPACE, needs_torch, objective, params_at, point

SEED = 11


def stock(algorithm: str, seed: int) -> optuna.samplers.BaseSampler:
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def history() -> list[Point]:
    """Twenty evaluated points (past TPE's and GP's start-up) and two open ones."""
    evaluated = [
        point(i, params_at(i), PointStatus.EVALUATED, objective(params_at(i))) for i in range(20)
    ]
    return [*evaluated, *(point(i, params_at(i), PointStatus.PENDING, None) for i in (20, 21))]


def kept(algorithm: str) -> SegmentOptimizer:
    return SegmentOptimizer(
        SPACE, history(), steering=SteeringConfig(algorithm=algorithm), seed=SEED, parallelism=2
    )


@pytest.mark.parametrize("algorithm", ["tpe", "gp"])
def test_draws_what_the_stock_sampler_draws(algorithm: str) -> None:
    needs_torch(algorithm)
    points = history()
    dists = to_optuna(SPACE)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=stock(algorithm, segment_seed(SEED, len(points))))
        study.add_trials(
            [
                create_trial(params=p.params, distributions=dists, value=objective(p.params))
                if p.status is PointStatus.EVALUATED
                else create_trial(params=p.params, distributions=dists, state=TrialState.RUNNING)
                for p in points
            ]
        )
        expected = study.ask(dists).params
    drawn = kept(algorithm).draw(1).points
    assert drawn == [expected]


@pytest.mark.parametrize("algorithm", ["tpe", "gp"])
def test_a_draw_does_not_work_the_space_out_from_the_trials(
    algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_torch(algorithm)

    def walk(*_: object, **__: object) -> None:
        raise AssertionError("the search space was computed from every trial")

    monkeypatch.setattr(optuna.search_space.IntersectionSearchSpace, "calculate", walk)
    optimizer = kept(algorithm)
    for _ in range(2):
        assert len(optimizer.draw(1).points) == 1
