"""The Hopaas-compatible API (docs/architecture.md §6.5): online workers ask for trials and
tell their losses, the user's token in the path.

The same title and properties from the same user always name the same study
(:mod:`services.api.online`). Asks go to the steering service over the bus; tells,
failures and intermediate values are conditional writes, so repeating one changes
nothing. Another user's study is a 404, like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict

from services.api.auth import authenticate
from services.api.deps import Ctx
from services.api.hopaas_properties import CONFIG_KEY, TRIAL_KEY, PropertyError, parse_study
from services.api.online import (
    ask_trial,
    best_trial,
    ensure_study,
    fail_trial,
    own_study,
    report_trial,
    tell_trial,
)
from services.api.pruning import build_pruner

router = APIRouter(prefix="/api", tags=["hopaas"])

VERSION = "hpo-relay 0.1.0 (Hopaas-compatible API)"


class _TrialBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    hopaas_trial: str


class TellBody(_TrialBody):
    loss: float


class ReportBody(_TrialBody):
    loss: float
    step: int


class FailBody(_TrialBody):
    error: str = ""


class TrialOutcome(BaseModel):
    hopaas_trial: str
    status: str
    recorded: bool
    """False when the trial was already closed: the call changed nothing."""


def unprocessable(name: str, msg: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["body", *name.split(".")], "msg": msg, "type": "value_error"}],
    )


async def _owner(ctx: Ctx, token: str) -> str:
    found = await authenticate(ctx.store, token)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid, expired or revoked token")
    if "user" not in found.scopes and "admin" not in found.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is not a user token")
    return found.owner


def _split_trial(text: str) -> tuple[str, int]:
    study_id, sep, index = text.rpartition(":")
    if not sep or not study_id or not index.isdigit():
        raise unprocessable(TRIAL_KEY, f"expected '<study_id>:<trial_id>', got {text!r}")
    return study_id, int(index)


@router.get("/version", response_class=PlainTextResponse)
async def version() -> str:
    return VERSION


@router.post("/ask/{token}")
async def ask(token: str, body: Annotated[dict[str, Any], Body()], ctx: Ctx) -> dict[str, Any]:
    owner = await _owner(ctx, token)
    try:
        spec = parse_study(body)
        build_pruner(spec.pruner, spec.pruner_args)
    except PropertyError as exc:
        raise unprocessable(exc.name, exc.message) from None
    except ValueError as exc:
        raise unprocessable(f"{CONFIG_KEY}.pruner", str(exc)) from None
    task = await ensure_study(ctx, owner, spec)
    trial = await ask_trial(ctx, task)
    config = {CONFIG_KEY: body[CONFIG_KEY]} if CONFIG_KEY in body else {}
    return {**spec.fill(trial.params), **config, TRIAL_KEY: f"{task.id}:{trial.index}"}


@router.post("/tell/{token}")
async def tell(token: str, body: TellBody, ctx: Ctx) -> TrialOutcome:
    study_id, index = _split_trial(body.hopaas_trial)
    task, study = await own_study(ctx, await _owner(ctx, token), study_id)
    closed = await tell_trial(ctx, task, study, index, body.loss)
    return TrialOutcome(hopaas_trial=body.hopaas_trial, **vars(closed))


@router.post("/mark_as_failed/{token}")
async def mark_as_failed(token: str, body: FailBody, ctx: Ctx) -> TrialOutcome:
    study_id, index = _split_trial(body.hopaas_trial)
    task, _ = await own_study(ctx, await _owner(ctx, token), study_id)
    closed = await fail_trial(ctx, task, index, body.error)
    return TrialOutcome(hopaas_trial=body.hopaas_trial, **vars(closed))


@router.post("/should_prune/{token}")
async def should_prune(token: str, body: ReportBody, ctx: Ctx) -> bool:
    study_id, index = _split_trial(body.hopaas_trial)
    task, study = await own_study(ctx, await _owner(ctx, token), study_id)
    return await report_trial(ctx, task, study, index, body.step, body.loss)


@router.get("/get_best_trial/{token}")
async def get_best_trial(token: str, hopaas_trial: str, ctx: Ctx) -> str:
    study_id, _ = _split_trial(hopaas_trial)
    task, study = await own_study(ctx, await _owner(ctx, token), study_id)
    index, _loss = await best_trial(ctx, task, study)
    return f"{task.id}:{index}"
