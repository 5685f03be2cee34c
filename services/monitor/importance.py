"""Parameter importance with Optuna's fANOVA evaluator, on a bounded sample.

fANOVA fits a random forest, so its cost grows with the trials it is given: the
monitor hands it at most :data:`IMPORTANCE_LIMIT` evaluated points (the best tenth and
a seeded draw, as the slice plots), in a worker thread, and caches the answer per
snapshot version (see :mod:`services.monitor.cache`).
"""

from __future__ import annotations

import warnings

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial

from services.monitor.series import sample_rows, select
from services.monitor.snapshot import IntArray, TaskSnapshot
from shared.searchspace import SearchSpace, to_optuna

IMPORTANCE_LIMIT = 500
MIN_TRIALS = 4


def _distributions(
    snap: TaskSnapshot, space: SearchSpace | None, rows: IntArray
) -> dict[str, BaseDistribution]:
    known = to_optuna(space) if space is not None else {}
    result: dict[str, BaseDistribution] = {}
    for name, column in snap.params.items():
        if name in known:
            result[name] = known[name]
        elif column.categorical:
            result[name] = CategoricalDistribution([str(v) for v in column.labels])
        else:
            values = snap.values(name)[rows]
            values = values[np.isfinite(values)]
            if len(values) and values.min() < values.max():
                result[name] = FloatDistribution(float(values.min()), float(values.max()))
    return result


def prepare(
    snap: TaskSnapshot,
    segment: str,
    space: SearchSpace | None,
    *,
    objective: int = 0,
    maximize: bool = False,
    limit: int = IMPORTANCE_LIMIT,
) -> list[FrozenTrial]:
    """The sample as Optuna trials, taken on the event loop (the snapshot changes there)
    so that :func:`compute` can run in a thread on data of its own."""
    sel = select(snap, segment, objective, maximize)
    picked = sample_rows(sel, limit)
    rows = sel.rows[picked]
    if len(rows) < MIN_TRIALS:
        return []
    distributions = _distributions(snap, space, rows)
    trials = []
    for row, loss in zip(rows.tolist(), sel.y[picked].tolist(), strict=True):
        # A point of a conditional space holds only its active parameters: it is a
        # trial of those, and Optuna ranks the parameters every trial has.
        params: dict[str, object] = {}
        for name, dist in distributions.items():
            value = snap.params[name].decode(float(snap.values(name)[row]))
            if value is None:
                continue
            if isinstance(dist, CategoricalDistribution) and value not in dist.choices:
                value = str(value)
            params[name] = value
        if params:
            own = {name: distributions[name] for name in params}
            trials.append(optuna.trial.create_trial(params=params, distributions=own, value=loss))
    return trials


def compute(trials: list[FrozenTrial], *, maximize: bool) -> dict[str, float]:
    """Each parameter's share of the loss's variance (summing to 1); empty below
    :data:`MIN_TRIALS` trials or when no parameter varies."""
    if len(trials) < MIN_TRIALS:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(direction="maximize" if maximize else "minimize")
        study.add_trials(trials)
        evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=32, seed=0)
        try:
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (ValueError, RuntimeError):
            return {}
    return {name: float(value) for name, value in found.items()}
