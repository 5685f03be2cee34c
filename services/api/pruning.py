"""Whether an online trial should stop early: Optuna's pruners on the stored curves.

Pure apart from Optuna: every call builds an in-memory Optuna study from the study's
trials (finished ones with their loss and intermediate values, open ones as running)
and asks the configured pruner about the trial in question, so nothing is kept between
calls and any api process can answer.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import optuna
from optuna.trial import TrialState, create_trial

from shared.domain.models import PointStatus
from shared.store.studies import Trial

PRUNER_CLASSES: dict[str, type[optuna.pruners.BasePruner]] = {
    "NopPruner": optuna.pruners.NopPruner,
    "MedianPruner": optuna.pruners.MedianPruner,
    "HyperbandPruner": optuna.pruners.HyperbandPruner,
    "ThresholdPruner": optuna.pruners.ThresholdPruner,
}


def build_pruner(name: str, args: dict[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner; ``ValueError`` for an unknown name or arguments Optuna refuses."""
    cls = PRUNER_CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown pruner {name!r}; known: {', '.join(PRUNER_CLASSES)}")
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None


def should_prune(
    pruner_name: str,
    pruner_args: dict[str, Any],
    direction: Literal["minimize", "maximize"],
    trials: Sequence[Trial],
    current: int,
    *,
    study_name: str,
) -> bool:
    """The pruner's verdict on trial ``current`` (an index) given every trial's curve.

    Every stored trial is added in index order, so Optuna's trial numbers are the
    study's trial indexes, and ``study_name`` is the study's id: HyperbandPruner
    assigns brackets from both, which must not change between calls.
    """
    pruner = build_pruner(pruner_name, pruner_args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            study_name=study_name,
            direction=direction,
            pruner=pruner,
            sampler=optuna.samplers.RandomSampler(seed=0),
        )
        target: int | None = None
        for position, trial in enumerate(sorted(trials, key=lambda t: t.point.index)):
            point = trial.point
            state, value = TrialState.FAIL, None
            if point.index == current:
                target, state = position, TrialState.RUNNING
            elif point.status is PointStatus.EVALUATED and isinstance(point.loss, int | float):
                state, value = TrialState.COMPLETE, float(point.loss)
            elif point.status is PointStatus.PENDING:
                state = TrialState.RUNNING
            study.add_trial(
                create_trial(
                    state=state,
                    value=value,
                    intermediate_values=trial.intermediate,
                    params={},
                    distributions={},
                )
            )
        if target is None:
            return False
        frozen = study.get_trials(deepcopy=False)[target]
        if not frozen.intermediate_values:
            return False
        return bool(pruner.prune(study, frozen))
