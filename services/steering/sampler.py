"""Optuna ask-and-tell for one segment, rebuilt from the database on every draw.

Rebuilding from the stored points (evaluated ones as completed trials, open ones as
running trials so that TPE's constant liar spreads new points away from them) makes the
steering service stateless: a restarted process draws exactly what the old one would
have drawn. Rebuilding costs O(points) per draw; caching the study is a later
optimisation, measured first.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState, create_trial

from shared.domain.models import Point, PointStatus
from shared.searchspace import SearchSpace, canonical_key, snap_point, to_optuna

MAX_DRAWS_PER_POINT = 25


def make_sampler(algorithm: str, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        # multivariate TPE and the constant liar are marked experimental by Optuna.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if algorithm == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if algorithm == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def _value(point: Point) -> float | None:
    loss = point.loss
    if isinstance(loss, list):
        loss = loss[0] if loss else None
    if loss is None or not math.isfinite(loss):
        return None
    return float(loss)


def suggest(
    space: SearchSpace,
    history: Sequence[Point],
    count: int,
    *,
    algorithm: str,
    seed: int,
) -> list[dict[str, Any]]:
    """Up to ``count`` new points, none equal to a point that is still open.

    Fewer are returned when the space has no distinct point left to offer (a small
    categorical space), which the caller treats as "try again later".
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    distributions = to_optuna(space)
    study = optuna.create_study(sampler=make_sampler(algorithm, seed))
    open_keys: set[str] = set()
    for point in history:
        params = {k: v for k, v in point.params.items() if k in distributions}
        if point.status in (PointStatus.UNEVALUATED, PointStatus.PENDING):
            open_keys.add(point.key)
            study.add_trial(
                create_trial(params=params, distributions=distributions, state=TrialState.RUNNING)
            )
            continue
        value = _value(point)
        if value is not None:
            study.add_trial(create_trial(params=params, distributions=distributions, value=value))
    new: list[dict[str, Any]] = []
    for _ in range(count):
        for _draw in range(MAX_DRAWS_PER_POINT):
            trial = study.ask(distributions)
            params = snap_point(space, trial.params)
            key = canonical_key(params)
            if key not in open_keys:
                open_keys.add(key)
                new.append(params)
                break
            study.tell(trial, state=TrialState.FAIL)
        else:
            break
    return new
