"""Read models assembled from the store, shared by the api and the monitor."""

from __future__ import annotations

from services.api.schemas import BestPoint, Progress, TaskView
from shared.domain.models import PointStatus, Task
from shared.store import Store


async def progress(store: Store, task: Task) -> Progress:
    counts = await store.points.count_by_status(task.id)
    return Progress(
        max_points=task.config.maxPoints,
        points=sum(counts.values()),
        unevaluated=counts[PointStatus.UNEVALUATED.value],
        pending=counts[PointStatus.PENDING.value],
        evaluated=counts[PointStatus.EVALUATED.value],
        failed=counts[PointStatus.FAILED.value],
        active_jobs=await store.jobs.count(task.id, active_only=True),
        jobs=await store.jobs.count(task.id, active_only=False),
    )


async def task_view(store: Store, task: Task) -> TaskView:
    best = None
    if task.best_point_id is not None and task.best_loss is not None:
        point = await store.points.get(task.best_point_id)
        if point is not None:
            best = BestPoint(point_id=point.id, loss=task.best_loss, params=point.params)
    return TaskView(
        id=task.id,
        name=task.name,
        owner=task.owner,
        status=task.status,
        reason=task.reason,
        config=task.config,
        created=task.created,
        updated=task.updated,
        progress=await progress(store, task),
        best=best,
    )
