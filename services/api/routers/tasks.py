"""``/api/v1/tasks``: submit, list, inspect and cancel one's own tasks.

Another user's task is a 404, indistinguishable from a task that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from services.api.deps import Ctx, CurrentUser, Offload, Settings
from services.api.paging import PageQuery, link_next, page_query, page_request
from services.api.schemas import (
    ArtifactView,
    JobView,
    PointView,
    TaskSubmission,
    TaskSummary,
    TaskView,
    WhoAmI,
)
from services.api.steering_check import steering_refusals
from services.api.submission import SubmissionError, build_task
from services.api.unavailable import publish_hint
from services.api.views import task_view
from services.api.warmstart_check import warm_start_refusals
from services.storage.policy import DOWNLOAD_EXPIRY
from shared.domain.models import JobStatus, Point, PointStatus, Task, TaskStatus
from shared.domain.paging import PageKey, PointOrder
from shared.messages import TaskCancelled, TaskSubmitted

router = APIRouter(prefix="/api/v1", tags=["tasks"])


async def _own_task(ctx: Ctx, user: CurrentUser, task_id: str) -> Task:
    task = await ctx.store.tasks.get_for_owner(task_id, user.owner)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    return task


@router.get("/whoami")
async def whoami(user: CurrentUser) -> WhoAmI:
    return WhoAmI(owner=user.owner, scopes=user.scopes, token_id=user.id)


@router.post("/tasks", status_code=status.HTTP_201_CREATED)
async def submit_task(
    body: TaskSubmission, ctx: Ctx, user: CurrentUser, settings: Settings, offload: Offload
) -> TaskView:
    """Everything is validated (off the event loop) before the first write, so a refused
    submission leaves no record behind."""
    try:
        task, segments = await offload.run(
            build_task, body, user.owner, max_files_bytes=settings.max_task_files_bytes
        )
    except SubmissionError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors) from None
    refusals = await steering_refusals(ctx.store, body.config)
    refusals += await warm_start_refusals(ctx.store, body.config, user.owner)
    if refusals:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, refusals)
    await ctx.store.segments.insert_many(segments)
    await ctx.store.tasks.insert(task)
    await publish_hint(ctx.bus, TaskSubmitted(task_id=task.id))
    return await task_view(ctx.store, task)


@router.get("/tasks")
async def list_tasks(
    ctx: Ctx,
    user: CurrentUser,
    limit: int = 100,
    out_ds: Annotated[str | None, Query(alias="outDS", max_length=255)] = None,
) -> list[TaskSummary]:
    """The user's tasks, newest first; with ``outDS``, those filed under that dataset."""
    tasks = await ctx.store.tasks.list_for_owner(
        user.owner, limit=max(1, min(limit, 1000)), out_ds=out_ds
    )
    return [
        TaskSummary(
            id=t.id,
            name=t.name,
            status=t.status,
            created=t.created,
            best_loss=t.best_loss,
            reason=t.reason,
            out_ds=t.config.outDS,
        )
        for t in tasks
    ]


@router.get("/tasks/{task_id}")
async def get_task(task_id: str, ctx: Ctx, user: CurrentUser) -> TaskView:
    return await task_view(ctx.store, await _own_task(ctx, user, task_id))


@router.get("/tasks/{task_id}/points")
async def list_points(
    task_id: str,
    request: Request,
    response: Response,
    ctx: Ctx,
    user: CurrentUser,
    paging: Annotated[PageQuery, Depends(page_query)],
    order: PointOrder = PointOrder.INDEX,
    point_status: Annotated[PointStatus | None, Query(alias="status")] = None,
    segment: Annotated[str | None, Query(max_length=255)] = None,
) -> list[PointView]:
    """One page of the task's points in generation order, or by loss (``order=loss``:
    only points with a scalar loss, smallest first; ``descending=true`` reverses);
    filtered by ``status`` and ``segment``. A full page links to the next one."""
    await _own_task(ctx, user, task_id)
    page = page_request(order.value, paging)
    points = await ctx.store.points.page_for_task(
        task_id, page, order=order, status=point_status, segment=segment
    )
    link_next(
        request,
        response,
        order.value,
        paging,
        points,
        lambda p: PageKey(value=_sort_value(p, order), id=p.id),
    )
    return [PointView.model_validate(p, from_attributes=True) for p in points]


def _sort_value(point: Point, order: PointOrder) -> int | float:
    if order is PointOrder.LOSS and isinstance(point.loss, int | float):
        return float(point.loss)
    return point.index


@router.get("/tasks/{task_id}/jobs")
async def list_jobs(
    task_id: str,
    request: Request,
    response: Response,
    ctx: Ctx,
    user: CurrentUser,
    paging: Annotated[PageQuery, Depends(page_query)],
    job_status: Annotated[JobStatus | None, Query(alias="status")] = None,
    site: Annotated[str | None, Query(max_length=255)] = None,
) -> list[JobView]:
    """One page of the task's jobs, oldest first (``descending=true``: newest first),
    filtered by ``status`` and ``site``. A full page links to the next one."""
    await _own_task(ctx, user, task_id)
    page = page_request("created", paging)
    jobs = await ctx.store.jobs.page_for_task(task_id, page, status=job_status, site=site)
    link_next(
        request, response, "created", paging, jobs, lambda j: PageKey(value=j.created, id=j.id)
    )
    return [JobView.model_validate(j, from_attributes=True) for j in jobs]


@router.get("/tasks/{task_id}/artifacts")
async def list_artifacts(task_id: str, ctx: Ctx, user: CurrentUser) -> list[ArtifactView]:
    await _own_task(ctx, user, task_id)
    return [
        ArtifactView(
            job_id=a.job_id,
            kind=a.kind,
            key=a.key,
            size=a.size,
            verified=a.verified,
            url=ctx.artifacts.presign_get(a.key, DOWNLOAD_EXPIRY),
        )
        for a in await ctx.store.artifacts.list_for_task(task_id)
    ]


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, ctx: Ctx, user: CurrentUser) -> TaskView:
    task = await _own_task(ctx, user, task_id)
    if await ctx.store.tasks.transition(task.id, TaskStatus.CANCELLED, reason="cancelled by user"):
        await ctx.store.jobs.cancel_task_jobs(task.id, "task cancelled")
        await ctx.bus.publish(TaskCancelled(task_id=task.id))
    elif task.status not in (TaskStatus.CANCELLED,):
        raise HTTPException(status.HTTP_409_CONFLICT, f"task is already {task.status.value}")
    refreshed = await ctx.store.tasks.get(task.id)
    assert refreshed is not None
    return await task_view(ctx.store, refreshed)
