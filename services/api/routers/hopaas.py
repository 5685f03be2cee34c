"""The Hopaas-compatible API: online workers ask for trials and tell their losses, the
user's token in the path.

Bodies are read as JSON whatever their ``Content-Type`` (:mod:`services.api.jsonbody`):
the public Hopaas client sends none. The same title, properties, direction, sampler and
pruner from the same user always name the same study (:mod:`services.api.online`).
Asks go to the steering service over the bus; tells, failures and intermediate values
are conditional writes, so repeating one changes nothing. Another user's study is a
404, like one that does not exist. ``get_best_trial`` answers ``<study_id>:<trial_id>``
as plain text, which is what the Hopaas client reads, or as a JSON string to a caller
that accepts only ``application/json``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Query, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import Ctx, Offload, Tokens
from services.api.hopaas_properties import (
    CONFIG_KEY,
    TRIAL_KEY,
    PropertyError,
    StudySpec,
    parse_study,
)
from services.api.jsonbody import JsonByContentRoute
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
from shared.edge_api import MAX_STEP, MAX_TEXT

router = APIRouter(prefix="/api", tags=["hopaas"], route_class=JsonByContentRoute)

VERSION = "hpo-relay 0.1.0 (Hopaas-compatible API)"


_TRIAL = re.compile(r"^(?P<study>[^:]{1,200}):(?P<index>[0-9]{1,18})$")


class _TrialBody(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    hopaas_trial: str = Field(max_length=300)


class TellBody(_TrialBody):
    loss: float


class ReportBody(_TrialBody):
    loss: float
    step: int = Field(ge=0, le=MAX_STEP)


class FailBody(_TrialBody):
    error: str = Field(default="", max_length=MAX_TEXT)


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


async def _owner(tokens: Tokens, token: str) -> str:
    found = await tokens.authenticate(token)
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid, expired or revoked token")
    if "user" not in found.scopes and "admin" not in found.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is not a user token")
    return found.owner


def _split_trial(text: str) -> tuple[str, int]:
    match = _TRIAL.match(text)
    if match is None:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise unprocessable(TRIAL_KEY, f"expected '<study_id>:<trial_id>', got {shown!r}")
    return match["study"], int(match["index"])


@router.get("/version", response_class=PlainTextResponse)
async def version() -> str:
    return VERSION


def check_study(body: dict[str, Any]) -> StudySpec:
    """The study an ask body describes, its pruner built once to check its arguments
    (CPU work: run it off the event loop)."""
    spec = parse_study(body)
    build_pruner(spec.pruner, spec.pruner_args)
    return spec


@router.post("/ask/{token}")
async def ask(
    token: str,
    body: Annotated[dict[str, Any], Body()],
    ctx: Ctx,
    offload: Offload,
    tokens: Tokens,
) -> dict[str, Any]:
    owner = await _owner(tokens, token)
    try:
        spec = await offload.run(check_study, body)
    except PropertyError as exc:
        raise unprocessable(exc.name, exc.message) from None
    except ValueError as exc:
        raise unprocessable(f"{CONFIG_KEY}.pruner", str(exc)) from None
    task = await ensure_study(ctx, owner, spec)
    trial = await ask_trial(ctx, task)
    config = {CONFIG_KEY: body[CONFIG_KEY]} if CONFIG_KEY in body else {}
    return {**spec.fill(trial.params), **config, TRIAL_KEY: f"{task.id}:{trial.index}"}


@router.post("/tell/{token}")
async def tell(token: str, body: TellBody, ctx: Ctx, tokens: Tokens) -> TrialOutcome:
    study_id, index = _split_trial(body.hopaas_trial)
    task, study = await own_study(ctx, await _owner(tokens, token), study_id)
    closed = await tell_trial(ctx, task, study, index, body.loss)
    return TrialOutcome(hopaas_trial=body.hopaas_trial, **vars(closed))


@router.post("/mark_as_failed/{token}")
async def mark_as_failed(token: str, body: FailBody, ctx: Ctx, tokens: Tokens) -> TrialOutcome:
    study_id, index = _split_trial(body.hopaas_trial)
    task, _ = await own_study(ctx, await _owner(tokens, token), study_id)
    closed = await fail_trial(ctx, task, index, body.error)
    return TrialOutcome(hopaas_trial=body.hopaas_trial, **vars(closed))


@router.post("/should_prune/{token}")
async def should_prune(token: str, body: ReportBody, ctx: Ctx, tokens: Tokens) -> bool:
    study_id, index = _split_trial(body.hopaas_trial)
    task, study = await own_study(ctx, await _owner(tokens, token), study_id)
    return await report_trial(ctx, task, study, index, body.step, body.loss)


@router.get(
    "/get_best_trial/{token}",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}, "application/json": {}}}},
)
async def get_best_trial(
    token: str,
    hopaas_trial: Annotated[str, Query(max_length=300)],
    ctx: Ctx,
    tokens: Tokens,
    accept: Annotated[str, Header(max_length=1000)] = "*/*",
) -> Response:
    study_id, _ = _split_trial(hopaas_trial)
    task, study = await own_study(ctx, await _owner(tokens, token), study_id)
    index, _loss = await best_trial(ctx, task, study)
    answer = f"{task.id}:{index}"
    if "application/json" in accept and "text/plain" not in accept and "*/*" not in accept:
        return JSONResponse(answer)
    return PlainTextResponse(answer)
