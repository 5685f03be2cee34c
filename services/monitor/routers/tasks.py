"""``/monitor/api/tasks``: the caller's task list, a task's page and its chart series.

Every series is computed from the monitor's snapshot of the task and memoised per
snapshot version, so an open page that asks again after an event costs NumPy work on
what is cached, not a database scan.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status

from services.api.deps import CurrentUser
from services.monitor import importance, reads, series, views
from services.monitor.cache import TaskEntry
from services.monitor.deps import Monitor, OwnEntry, OwnFirst
from services.monitor.schemas import Me, TaskDetail, TaskRow

router = APIRouter(prefix="/monitor/api", tags=["monitor"])

Segment = Annotated[str | None, Query(max_length=200)]
Objective = Annotated[int, Query(ge=0, le=16)]


@router.get("/me")
async def me(user: CurrentUser) -> Me:
    return Me(owner=user.owner)


@router.get("/tasks")
async def list_tasks(
    mon: Monitor,
    user: CurrentUser,
    status_filter: Annotated[str | None, Query(alias="status", max_length=40)] = None,
    kind: Literal["task", "study"] | None = None,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[TaskRow]:
    """Newest first; ``q`` matches the id or the name, case-insensitively."""
    rows = []
    needle = q.strip().lower()
    for task in await reads.own_tasks(mon.store, user.owner, limit=limit):
        if status_filter and task.status.value != status_filter:
            continue
        if kind and (kind == "study") != task.config.online:
            continue
        if needle and needle not in task.id.lower() and needle not in task.name.lower():
            continue
        rows.append(await mon.summaries.row(task))
    return rows


@router.get("/tasks/{task_id}")
async def task_detail(first: OwnFirst, mon: Monitor) -> TaskDetail:
    return await mon.summaries.detail(first.entry, first.view)


def _segment(entry: TaskEntry, segment: str | None) -> str:
    if segment is None:
        return entry.segments[0]
    if segment not in entry.segments:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"segment: the task has {', '.join(entry.segments)}",
        )
    return segment


def _objective(entry: TaskEntry, objective: int) -> int:
    if objective >= entry.snapshot.objectives:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"objective: the task has {entry.snapshot.objectives} objective(s)",
        )
    return objective


@router.get("/tasks/{task_id}/history")
async def history(
    first: OwnFirst,
    segment: Segment = None,
    objective: Objective = 0,
    x0: float | None = None,
    x1: float | None = None,
) -> dict[str, Any]:
    """Loss by index, downsampled to about 2,000 markers (re-cut inside ``[x0, x1]``)."""
    seg = _segment(first.entry, segment)
    window = (x0, x1) if x0 is not None and x1 is not None else None
    if first.view is not None and window is None and objective == views.DEFAULT_OBJECTIVE:
        stored = first.view.history.get(seg)
        if stored is not None:
            return stored
    entry = await first.loaded()
    return views.history(entry, seg, _objective(entry, objective), window)


@router.get("/tasks/{task_id}/slices")
async def slices(entry: OwnEntry, segment: Segment = None, objective: Objective = 0) -> Any:
    seg, obj = _segment(entry, segment), _objective(entry, objective)
    return entry.memo(
        ("slices", seg, obj),
        lambda: series.slices(
            entry.snapshot,
            seg,
            objective=obj,
            maximize=entry.direction_of(obj),
            log_params=entry.log_params(seg),
        ),
    )


@router.get("/tasks/{task_id}/parallel")
async def parallel(entry: OwnEntry, segment: Segment = None, objective: Objective = 0) -> Any:
    seg, obj = _segment(entry, segment), _objective(entry, objective)
    return entry.memo(
        ("parallel", seg, obj),
        lambda: series.parallel(
            entry.snapshot,
            seg,
            objective=obj,
            maximize=entry.direction_of(obj),
            log_params=entry.log_params(seg),
        ),
    )


@router.get("/tasks/{task_id}/intermediate")
async def intermediate(entry: OwnEntry, segment: Segment = None) -> Any:
    seg = _segment(entry, segment)
    return entry.memo(("curves", seg), lambda: series.intermediates(entry.snapshot, seg))


@router.get("/tasks/{task_id}/pareto")
async def pareto(entry: OwnEntry, segment: Segment = None) -> Any:
    seg = _segment(entry, segment)
    if len(entry.directions) < 2:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the task has a single objective")
    directions = [str(d) for d in entry.directions]
    return entry.memo(("pareto", seg), lambda: series.pareto(entry.snapshot, seg, directions))


@router.get("/tasks/{task_id}/importance")
async def param_importance(
    entry: OwnEntry, segment: Segment = None, objective: Objective = 0
) -> dict[str, Any]:
    """fANOVA importances on a sample, computed off the event loop and cached."""
    seg, obj = _segment(entry, segment), _objective(entry, objective)
    snap, space, maximize = entry.snapshot, entry.spaces.get(seg), entry.direction_of(obj)
    values, current = await entry.slow(
        ("importance", seg, obj),
        lambda: importance.prepare(snap, seg, space, objective=obj, maximize=maximize),
        lambda trials: importance.compute(trials, maximize=maximize),
    )
    return {"segment": seg, "importances": values, "current": current}
