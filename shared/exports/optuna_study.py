"""Writing a task into an Optuna storage as studies that Optuna's own tools read unchanged
(``optuna.load_study``, ``optuna.visualization``, optuna-dashboard).

One study per segment (a task without segments has one, named after the task id;
segment ``s`` of a segmented task is ``<name>.s``), with the task's directions. Each
point becomes a trial, in index order:

===========================  ===============================================
point                        trial
===========================  ===============================================
evaluated                    COMPLETE with its loss (a list: one per objective)
evaluated by the pruner      PRUNED with the value it was stopped at
failed after its attempts    FAIL (the large loss it was given is the user
                             attribute ``hpo_loss``)
pending / unevaluated        RUNNING / WAITING
===========================  ===============================================

Intermediate values go to single-objective trials (Optuna reports one value per step).
Distributions come from the segment's search space as the optimisers use them
(:func:`shared.searchspace.to_optuna`); where a stored value lies outside the range
Optuna was given (``normal`` and ``lognormal`` draws beyond mu ± 4 sigma), that trial's
range is widened to hold it, which Optuna allows between trials. The point's id,
attempts, site, host, job and last error are user attributes; times are the payload's
start and the point's result.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState, create_trial

from shared.domain.models import PointStatus
from shared.exports.record import PointRecord, SegmentRecord, TaskRecord
from shared.searchspace import parse_search_space, to_optuna


class StudyExistsError(ValueError):
    """A study of that name is in the storage already (``replace`` was not asked)."""


def study_names(record: TaskRecord, name: str | None = None) -> dict[str, str]:
    """Segment name -> study name."""
    base = name or record.id
    if not record.segmented:
        return {s.name: base for s in record.segments}
    return {s.name: f"{base}.{s.name}" for s in record.segments}


def write_optuna(
    record: TaskRecord,
    storage: str | optuna.storages.BaseStorage,
    *,
    name: str | None = None,
    replace: bool = False,
) -> list[str]:
    """Write ``record`` into ``storage`` (an Optuna storage URL or object); returns the
    study names. An existing study of the same name is replaced only if ``replace``."""
    if isinstance(storage, str):
        built = optuna.storages.get_storage(storage)
        try:
            return write_optuna(record, built, name=name, replace=replace)
        finally:
            if isinstance(built, optuna.storages.RDBStorage):
                built.engine.dispose()
    names = study_names(record, name)
    existing = {s.study_name for s in storage.get_all_studies()}
    clash = sorted(set(names.values()) & existing)
    if clash and not replace:
        raise StudyExistsError(f"study {clash[0]!r} exists in this storage; replace it or rename")
    written = []
    for segment in record.segments:
        study_name = names[segment.name]
        if study_name in existing:
            optuna.delete_study(study_name=study_name, storage=storage)
        study = optuna.create_study(
            storage=storage, study_name=study_name, directions=record.directions
        )
        _describe(study, record, segment)
        points = [p for p in record.points if p.segment == segment.name]
        study.add_trials(_trial(record, segment, p, _distributions(segment)) for p in points)
        written.append(study_name)
    return written


def _describe(study: optuna.Study, record: TaskRecord, segment: SegmentRecord) -> None:
    study.set_user_attr("hpo_task_id", record.id)
    study.set_user_attr("hpo_task_name", record.name)
    study.set_user_attr("hpo_owner", record.owner)
    study.set_user_attr("hpo_status", record.status.value)
    study.set_user_attr("hpo_segment", segment.name)


def _distributions(segment: SegmentRecord) -> dict[str, BaseDistribution]:
    return to_optuna(parse_search_space(segment.search_space))


def _trial(
    record: TaskRecord,
    segment: SegmentRecord,
    point: PointRecord,
    space: dict[str, BaseDistribution],
) -> FrozenTrial:
    params: dict[str, Any] = {}
    distributions: dict[str, BaseDistribution] = {}
    user_attrs: dict[str, Any] = {
        "hpo_point_id": point.id,
        "hpo_attempts": point.attempts,
        "hpo_site": point.site or "",
        "hpo_host": point.host,
        "hpo_job_id": point.job_id or "",
        "hpo_last_error": point.last_error,
    }
    for key, value in point.params.items():
        fitted = _fit(space.get(key), value)
        if fitted is None:
            user_attrs[f"hpo_param_{key}"] = value  # not expressible in this space
            continue
        params[key], distributions[key] = value, fitted
    state, values = _outcome(record, point, user_attrs)
    single = len(record.directions) == 1
    trial = create_trial(
        state=state,
        values=values,
        params=params,
        distributions=distributions,
        user_attrs=user_attrs,
        intermediate_values=dict(point.intermediate) if single else None,
    )
    trial.datetime_start = _local(point.started or point.created)
    finished = state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trial.datetime_complete = _local(point.evaluated or point.started) if finished else None
    if trial.datetime_complete and trial.datetime_start:
        trial.datetime_start = min(trial.datetime_start, trial.datetime_complete)
    return trial


def _outcome(
    record: TaskRecord, point: PointRecord, user_attrs: dict[str, Any]
) -> tuple[TrialState, list[float] | None]:
    if point.status is PointStatus.PENDING:
        return TrialState.RUNNING, None
    if point.status is PointStatus.UNEVALUATED:
        return TrialState.WAITING, None
    losses = point.loss if isinstance(point.loss, list) else [point.loss]
    if point.status is PointStatus.FAILED:
        user_attrs["hpo_loss"] = point.loss
        return TrialState.FAIL, None
    numbers = [float(v) for v in losses if v is not None]
    if len(numbers) != len(record.directions) or not all(map(math.isfinite, numbers)):
        user_attrs["hpo_loss"] = point.loss
        return TrialState.FAIL, None
    if point.pruned_step is not None:
        return TrialState.PRUNED, numbers
    return TrialState.COMPLETE, numbers


def _fit(distribution: BaseDistribution | None, value: Any) -> BaseDistribution | None:
    """The distribution for ``value`` in one trial: as given, or widened to hold it."""
    if distribution is None:
        return None
    if isinstance(distribution, CategoricalDistribution):
        return distribution if value in distribution.choices else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(distribution, IntDistribution):
        if not float(value).is_integer():
            return None
        low, high = min(distribution.low, int(value)), max(distribution.high, int(value))
        if distribution.step != 1 and (low, high) != (distribution.low, distribution.high):
            return None
        return IntDistribution(low, high, log=distribution.log, step=distribution.step)
    if isinstance(distribution, FloatDistribution):
        if distribution._contains(float(value)):
            return distribution
        if distribution.step is not None or (distribution.log and value <= 0):
            return None
        bottom = min(distribution.low, float(value))
        top = max(distribution.high, float(value))
        return FloatDistribution(bottom, top, log=distribution.log)
    return None


def _local(moment: datetime | None) -> datetime | None:
    """Optuna keeps naive local times (``datetime.now()``)."""
    return None if moment is None else moment.astimezone().replace(tzinfo=None)
