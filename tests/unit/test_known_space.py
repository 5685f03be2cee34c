"""TPE and GP are told the segment's search space: they draw what stock Optuna draws,
without walking every trial at each draw to work the space out."""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from services.steering.logic import segment_seed
from services.steering.sampler import SegmentOptimizer
from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import SteeringConfig
from shared.searchspace import canonical_key, parse_search_space, to_optuna

SPACE = parse_search_space(
    {
        "x": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
        "lr": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-1}},
        "n": {"method": "uniformint", "dimension": {"low": 1, "high": 50}},
        "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh", "gelu"]}},
    }
)
SEED = 11
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def stock(algorithm: str, seed: int) -> optuna.samplers.BaseSampler:
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def params_at(i: int) -> dict[str, Any]:
    return {
        "x": round((i * 0.37) % 1, 6),
        "lr": 10.0 ** -(1 + i % 4),
        "n": 1 + (i * 7) % 50,
        "act": ("relu", "tanh", "gelu")[i % 3],
    }


def loss(params: dict[str, Any]) -> float:
    return float((params["x"] - 0.3) ** 2 + (math.log10(params["lr"]) + 3) ** 2 / 10)


def history() -> list[Point]:
    """Twenty evaluated points (past TPE's and GP's start-up) and two open ones."""
    points = []
    for i in range(22):
        params = params_at(i)
        evaluated = i < 20
        points.append(
            Point(
                id=f"t.main.{i}",
                task_id="t",
                segment="main",
                index=i,
                params=params,
                key=canonical_key(params),
                status=PointStatus.EVALUATED if evaluated else PointStatus.PENDING,
                loss=loss(params) if evaluated else None,
            )
        )
    return points


def kept(algorithm: str) -> SegmentOptimizer:
    return SegmentOptimizer(
        SPACE, history(), steering=SteeringConfig(algorithm=algorithm), seed=SEED, parallelism=2
    )


@pytest.mark.parametrize("algorithm", ["tpe", *(["gp"] if HAVE_TORCH else [])])
def test_draws_what_the_stock_sampler_draws(algorithm: str) -> None:
    points = history()
    dists = to_optuna(SPACE)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=stock(algorithm, segment_seed(SEED, len(points))))
        study.add_trials(
            [
                create_trial(params=p.params, distributions=dists, value=loss(p.params))
                if p.status is PointStatus.EVALUATED
                else create_trial(params=p.params, distributions=dists, state=TrialState.RUNNING)
                for p in points
            ]
        )
        expected = study.ask(dists).params
    drawn = kept(algorithm).draw(1).points
    assert drawn == [expected]


@pytest.mark.parametrize("algorithm", ["tpe", *(["gp"] if HAVE_TORCH else [])])
def test_a_draw_does_not_work_the_space_out_from_the_trials(
    algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def walk(*_: object, **__: object) -> None:
        raise AssertionError("the search space was computed from every trial")

    monkeypatch.setattr(optuna.search_space.IntersectionSearchSpace, "calculate", walk)
    optimizer = kept(algorithm)
    for _ in range(2):
        assert len(optimizer.draw(1).points) == 1
