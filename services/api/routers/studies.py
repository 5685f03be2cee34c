"""``/api/v1/studies``: native online ask-and-tell with a bearer token.

The same studies as the Hopaas-compatible API (:mod:`services.api.routers.hopaas`):
a study is described by a title and properties (plain values and ``optuna#``
suggestion strings), and the same description from the same user opens the same
study. Trials are numbered from 0; tell, fail and report are idempotent.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import Ctx, CurrentUser, Offload
from services.api.hopaas_properties import CONFIG_KEY, MAX_TITLE, PropertyError
from services.api.online import (
    ask_trial,
    best_trial,
    ensure_study,
    fail_trial,
    filled,
    own_study,
    report_trial,
    tell_trial,
)
from services.api.routers.hopaas import check_study, unprocessable
from shared.bounds import INT64_MAX
from shared.domain.models import Task
from shared.edge_api import MAX_STEP, MAX_TEXT
from shared.store.records import Study

router = APIRouter(prefix="/api/v1/studies", tags=["studies"])
MAX_IDLE_SECONDS = 366 * 24 * 3600.0


class Plugin(BaseModel):
    name: str = Field(max_length=200)
    args: dict[str, Any] = Field(default_factory=dict)


class StudyCreate(BaseModel):
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    properties: dict[str, Any]
    direction: Literal["minimize", "maximize"] = "minimize"
    sampler: Plugin = Field(default_factory=lambda: Plugin(name="TPESampler"))
    pruner: Plugin = Field(default_factory=lambda: Plugin(name="NopPruner"))
    initial_points: list[dict[str, Any]] = Field(default_factory=list, max_length=1_000)
    """Values of the sampled properties asked first, in order, when the study is
    opened (a study found again keeps its own; not part of its identity)."""
    idle_timeout: float | None = Field(default=None, gt=0, le=MAX_IDLE_SECONDS)
    """Close the study after this many seconds without an ask or a tell (not part of
    the study's identity: given again, it replaces the study's idle timeout)."""


class StudyUpdate(BaseModel):
    idle_timeout: float | None = Field(gt=0, le=MAX_IDLE_SECONDS)
    """Seconds without an ask or a tell after which the study is closed; null: never."""


class StudyView(BaseModel):
    id: str
    title: str
    direction: str
    properties: dict[str, Any]
    pruner: str
    status: str
    reason: str = ""
    """Why the study was closed; empty while it is open."""
    idle_timeout: float | None = None


class TrialView(BaseModel):
    study_id: str
    trial: int
    params: dict[str, Any]
    """The study's properties with this trial's values filled in."""


class _TrialBody(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    trial: int = Field(ge=0, le=INT64_MAX)


class TellBody(_TrialBody):
    loss: float


class FailBody(_TrialBody):
    error: str = Field(default="", max_length=MAX_TEXT)


class ReportBody(_TrialBody):
    step: int = Field(ge=0, le=MAX_STEP)
    value: float


class Outcome(BaseModel):
    study_id: str
    trial: int
    status: str
    recorded: bool


class Verdict(BaseModel):
    prune: bool


class Best(BaseModel):
    study_id: str
    trial: int
    loss: float


def _view(study: Study, task: Task) -> StudyView:
    return StudyView(
        id=study.id,
        title=study.title,
        direction=study.direction,
        properties=study.properties,
        pruner=study.pruner,
        status=task.status.value,
        reason=task.reason,
        idle_timeout=study.idle_timeout,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def open_study(body: StudyCreate, ctx: Ctx, user: CurrentUser, offload: Offload) -> StudyView:
    config = {
        "title": body.title,
        "direction": body.direction,
        "sampler": body.sampler.model_dump(),
        "pruner": body.pruner.model_dump(),
        "initial_points": body.initial_points,
    }
    try:
        spec = await offload.run(check_study, {**body.properties, CONFIG_KEY: config})
    except PropertyError as exc:
        name = exc.name.replace(f"{CONFIG_KEY}.", "")
        known = ("sampler", "pruner", "direction")
        keep = name in known or name.startswith("initial_points")
        where = name if keep else f"properties.{name}"
        raise unprocessable(where, exc.message) from None
    except ValueError as exc:
        raise unprocessable("pruner", str(exc)) from None
    task = await ensure_study(ctx, user.owner, spec)
    if body.idle_timeout is not None:
        await ctx.store.studies.set_idle_timeout(task.id, body.idle_timeout)
    task, study = await own_study(ctx, user.owner, task.id)
    return _view(study, task)


@router.get("/{study_id}")
async def get_study(study_id: str, ctx: Ctx, user: CurrentUser) -> StudyView:
    task, study = await own_study(ctx, user.owner, study_id)
    return _view(study, task)


@router.patch("/{study_id}")
async def update_study(study_id: str, body: StudyUpdate, ctx: Ctx, user: CurrentUser) -> StudyView:
    """Set or clear the study's idle timeout."""
    await own_study(ctx, user.owner, study_id)
    await ctx.store.studies.set_idle_timeout(study_id, body.idle_timeout)
    task, study = await own_study(ctx, user.owner, study_id)
    return _view(study, task)


@router.post("/{study_id}/close")
async def close(study_id: str, ctx: Ctx, user: CurrentUser) -> StudyView:
    """Close the study: no more asks (409); trials already asked may still be told.
    Closing a closed study changes nothing."""
    await own_study(ctx, user.owner, study_id)
    await ctx.store.tasks.close(study_id, "closed by its owner")
    await ctx.store.studies.mark_closed(study_id)
    task, study = await own_study(ctx, user.owner, study_id)
    return _view(study, task)


@router.post("/{study_id}/ask")
async def ask(study_id: str, ctx: Ctx, user: CurrentUser) -> TrialView:
    task, study = await own_study(ctx, user.owner, study_id)
    trial = await ask_trial(ctx, task)
    return TrialView(
        study_id=task.id, trial=trial.index, params=filled(study.properties, trial.params)
    )


@router.post("/{study_id}/tell")
async def tell(study_id: str, body: TellBody, ctx: Ctx, user: CurrentUser) -> Outcome:
    task, study = await own_study(ctx, user.owner, study_id)
    closed = await tell_trial(ctx, task, study, body.trial, body.loss)
    return Outcome(study_id=task.id, trial=body.trial, **vars(closed))


@router.post("/{study_id}/fail")
async def fail(study_id: str, body: FailBody, ctx: Ctx, user: CurrentUser) -> Outcome:
    task, _ = await own_study(ctx, user.owner, study_id)
    closed = await fail_trial(ctx, task, body.trial, body.error)
    return Outcome(study_id=task.id, trial=body.trial, **vars(closed))


@router.post("/{study_id}/report")
async def report(study_id: str, body: ReportBody, ctx: Ctx, user: CurrentUser) -> Verdict:
    task, study = await own_study(ctx, user.owner, study_id)
    prune = await report_trial(ctx, task, study, body.trial, body.step, body.value)
    return Verdict(prune=prune)


@router.get("/{study_id}/best")
async def best(study_id: str, ctx: Ctx, user: CurrentUser) -> Best:
    task, study = await own_study(ctx, user.owner, study_id)
    index, loss = await best_trial(ctx, task, study)
    return Best(study_id=task.id, trial=index, loss=loss)
