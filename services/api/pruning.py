"""Whether a trial should stop early: Optuna's pruners on the stored curves.

Pure apart from Optuna: every call builds an in-memory Optuna study from the stored
trials of one segment (evaluated ones with their loss and intermediate values, open
ones as running, the rest as failed) and asks the configured pruner about the trial in
question, so any api process can answer. What a pruner notes on the trial between
calls (SuccessiveHalving's completed rungs, also inside Hyperband) is handed back in
the decision and stored with the point, then given back to the next call, so those
pruners see the same history they would in one long-lived Optuna study.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.trial import TrialState, create_trial

from shared.domain.models import PointStatus
from shared.pruners import PrunerError
from shared.pruners import build_pruner as _build
from shared.store.records import Trial

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Decision:
    prune: bool
    attrs: dict[str, Any] = field(default_factory=dict)
    """The pruner's notes on the judged trial, to store for the next call."""


def build_pruner(name: str, args: dict[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner; ``ValueError`` for an unknown name or arguments Optuna refuses."""
    try:
        return _build(name, args)
    except PrunerError as exc:
        raise ValueError(str(exc)) from None


def _state(trial: Trial) -> tuple[TrialState, float | None]:
    point = trial.point
    if point.status is PointStatus.EVALUATED and isinstance(point.loss, int | float):
        return TrialState.COMPLETE, float(point.loss)
    if point.status in (PointStatus.PENDING, PointStatus.UNEVALUATED):
        return TrialState.RUNNING, None
    return TrialState.FAIL, None


def decide(
    pruner_name: str,
    pruner_args: dict[str, Any],
    direction: Direction,
    trials: Sequence[Trial],
    current: int,
    *,
    study_name: str,
) -> Decision:
    """The pruner's verdict on trial ``current`` (an index) given every trial's curve.

    Every stored trial is added in index order, so Optuna's trial numbers are the
    trials' indexes when they are dense, and ``study_name`` is stable (the study's or
    the segment's id): HyperbandPruner assigns brackets from both.
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
            state, value = _state(trial)
            if trial.point.index == current:
                target, state, value = position, TrialState.RUNNING, None
            study.add_trial(
                create_trial(
                    state=state,
                    value=value,
                    intermediate_values=trial.intermediate,
                    params={},
                    distributions={},
                    system_attrs=trial.pruner_attrs,
                )
            )
        if target is None:
            return Decision(prune=False)
        frozen = study.get_trials(deepcopy=False)[target]
        if not frozen.intermediate_values:
            return Decision(prune=False)
        prune = bool(pruner.prune(study, frozen))
        attrs = dict(study.get_trials(deepcopy=False)[target].system_attrs)
    return Decision(prune=prune, attrs=attrs)


def should_prune(
    pruner_name: str,
    pruner_args: dict[str, Any],
    direction: Direction,
    trials: Sequence[Trial],
    current: int,
    *,
    study_name: str,
) -> bool:
    """The verdict alone (for callers that keep no pruner notes)."""
    return decide(pruner_name, pruner_args, direction, trials, current, study_name=study_name).prune
