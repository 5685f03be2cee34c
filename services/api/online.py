"""Online studies for the api's routers: opening a study, asking steering for a trial,
and the conditional tell, failure and report writes (shared by the Hopaas-compatible
and the native routers).

A study is a task of its owner with no evaluation jobs; its id is derived from the
owner, title and properties, so the same study is found again by whoever describes it
the same way. The task is ``running`` and marked ``online`` in its config, so steering's
batch top-up and the job builder leave it alone: its points come only from asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from fastapi import HTTPException, status

from services.api.curves import PrunerChoice, record_curve
from services.api.hopaas_properties import StudySpec
from services.context import Context
from shared.bus import RequestError, RequestTimeoutError
from shared.clock import new_id
from shared.domain.models import ACTIVE_TASK_STATES, PointStatus, Segment, Task, TaskStatus
from shared.domain.taskconfig import TaskConfig
from shared.online import STEERING_TARGET, AskReply, AskRequest, trial_point_id
from shared.searchspace import parse_search_space, to_phpo
from shared.store.errors import DuplicateKeyError
from shared.store.records import Study

log = logging.getLogger(__name__)

SEGMENT = "main"
ONLINE_EXEC = "(online study: evaluated by its own workers)"
"""The evaluationExec of a study's task; no job is ever built for it."""
ASK_TIMEOUT = 20.0
ASK_ATTEMPTS = 2
STUDY_MAX_TRIALS = 1_000_000
"""A study has no end of its own: its task's ``maxPoints`` is only a cap."""
STUDY_BUDGET = 1000
"""The evaluations a study's optimiser plans for unless the sampler's args say
(``budget``). Nevergrad picks its strategy from it: with the trial cap instead, NGOpt
became a portfolio of 64 optimisers, each told every result (0.25 s per trial)."""


@dataclass(frozen=True)
class Asked:
    index: int
    params: dict[str, object]


@dataclass(frozen=True)
class Closed:
    """The trial's status after a tell or failure; ``recorded`` is False when the call
    changed nothing (the trial was already closed)."""

    status: str
    recorded: bool


async def own_study(ctx: Context, owner: str, study_id: str) -> tuple[Task, Study]:
    task, study = await asyncio.gather(
        ctx.store.tasks.get_for_owner(study_id, owner),
        ctx.store.studies.get_for_owner(study_id, owner),
    )
    if task is None or study is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no study {study_id}")
    return task, study


async def ensure_study(ctx: Context, owner: str, spec: StudySpec) -> Task:
    """The owner's study with this title and properties, created on first use."""
    key = spec.key(owner)
    study_id = f"study_{key[:24]}"
    task = await ctx.store.tasks.get_for_owner(study_id, owner)
    if task is not None:
        return task
    await ctx.store.studies.insert(
        Study(
            id=study_id,
            owner=owner,
            title=spec.title,
            key=key,
            direction=spec.direction,
            properties=spec.properties,
            pruner=spec.pruner,
            pruner_args=spec.pruner_args,
        )
    )
    segment = Segment(
        id=f"{study_id}.{SEGMENT}",
        task_id=study_id,
        name=SEGMENT,
        index=0,
        search_space=to_phpo(parse_search_space(spec.space, allow_empty=True)),
        initial_points=spec.initial_points,
    )
    task = Task(
        id=study_id,
        owner=owner,
        name=spec.title,
        status=TaskStatus.RUNNING,
        jobs_counted=0,
        config=TaskConfig(
            evaluationExec=ONLINE_EXEC,
            online=True,
            maxPoints=STUDY_MAX_TRIALS,
            failedPoints="exclude",
            steering=spec.steering
            if spec.steering.budget is not None
            else spec.steering.model_copy(update={"budget": STUDY_BUDGET}),
        ),
    )
    with contextlib.suppress(DuplicateKeyError):  # a concurrent first ask
        await ctx.store.segments.insert_many([segment])
    with contextlib.suppress(DuplicateKeyError):
        await ctx.store.tasks.insert(task)
    log.info("study %s (%r) of %s opened", study_id, spec.title, owner)
    return task


RETRY_LATER = {"Retry-After": "2"}
"""An ask that steering could not answer may be repeated at once: it carries its id."""


async def ask_trial(ctx: Context, task: Task) -> Asked:
    """A new trial of the study ``task`` (just read by the caller) from steering;
    retried once with the same ask id on a timeout.

    The study's status is checked here, on the caller's fresh read: steering keeps the
    study's unchanging documents in memory and does not read the task again.
    """
    if task.status not in ACTIVE_TASK_STATES:
        why = f" ({task.reason})" if task.reason else ""
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"study {task.id} is {task.status.value}{why}"
        )
    request = AskRequest(task_id=task.id, owner=task.owner, ask_id=new_id("ask_"))
    reply = None
    for attempt in range(ASK_ATTEMPTS):
        if attempt:
            request = request.model_copy(update={"retry": True})
        try:
            reply = await ctx.bus.request(STEERING_TARGET, request, timeout=ASK_TIMEOUT)
            break
        except RequestTimeoutError:
            if attempt + 1 == ASK_ATTEMPTS:
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE, "steering timed out", headers=RETRY_LATER
                ) from None
        except RequestError as exc:
            log.warning("ask for study %s failed: %s", task.id, exc)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "steering is not available",
                headers=RETRY_LATER,
            ) from None
    if not isinstance(reply, AskReply):
        raise TypeError(f"unexpected reply {type(reply).__name__}")
    if reply.not_found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, reply.error)
    if reply.error or reply.index is None:
        raise HTTPException(status.HTTP_409_CONFLICT, reply.error or "no trial")
    return Asked(index=reply.index, params=reply.params)


def filled(properties: dict[str, object], params: dict[str, object]) -> dict[str, object]:
    """The study's properties with the trial's drawn values in place of suggestions."""
    return {k: params.get(k, v) for k, v in properties.items()}


async def _closed(ctx: Context, point_id: str, recorded: bool) -> Closed:
    """The trial's status as stored (after a call that did not change it)."""
    point = await ctx.store.points.get(point_id)
    if point is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trial {point_id}")
    return Closed(status=point.status.value, recorded=recorded)


async def tell_trial(ctx: Context, task: Task, study: Study, index: int, loss: float) -> Closed:
    point_id = trial_point_id(task.id, SEGMENT, index)
    if not await ctx.store.studies.tell(point_id, loss):
        return await _closed(ctx, point_id, recorded=False)
    ctx.metrics.points_evaluated.inc()
    if study.direction == "minimize":
        await ctx.store.tasks.offer_best(task.id, loss, point_id)
    return Closed(status=PointStatus.EVALUATED.value, recorded=True)


async def fail_trial(ctx: Context, task: Task, index: int, error: str) -> Closed:
    point_id = trial_point_id(task.id, SEGMENT, index)
    if not await ctx.store.studies.fail(point_id, error):
        return await _closed(ctx, point_id, recorded=False)
    ctx.metrics.points_failed.inc()
    return Closed(status=PointStatus.FAILED.value, recorded=True)


async def report_trial(
    ctx: Context, task: Task, study: Study, index: int, step: int, value: float
) -> bool:
    """Store the intermediate value and return the study's pruner's verdict; a pruned
    trial is closed as evaluated with its last value, and stays pruned."""
    point = await ctx.store.points.get(trial_point_id(task.id, SEGMENT, index))
    if point is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trial {task.id}:{index}")
    pruner = PrunerChoice(
        name=study.pruner,
        args=study.pruner_args,
        direction=study.direction,
        study_name=study.id,
    )
    outcome = await record_curve(ctx, point, [(step, value)], pruner, job_id=None)
    return outcome.pruned_step is not None


async def best_trial(ctx: Context, task: Task, study: Study) -> tuple[int, float]:
    """Index and loss of the best told trial (pruned ones are not candidates, as in
    Optuna); 404 when none was told yet."""
    told = [
        (float(t.point.loss), t.point.index)
        for t in await ctx.store.studies.trials(task.id)
        if t.point.status is PointStatus.EVALUATED
        and t.point.pruned_step is None
        and isinstance(t.point.loss, int | float)
    ]
    if not told:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"study {task.id} has no told trial")
    pick = min if study.direction == "minimize" else max
    loss, index = pick(told, key=lambda pair: pair[0])
    return index, loss
