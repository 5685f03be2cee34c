"""Read models assembled from the store, shared by the api and the monitor."""

from __future__ import annotations

from collections import Counter

from services.api.schemas import BestPoint, ParetoPoint, Progress, SegmentProgress, TaskView
from shared.domain.models import ACTIVE_TASK_STATES, PointStatus, Task, WarmStartSummary
from shared.domain.taskconfig import Direction
from shared.store import Store


def _counted(counts: Counter[str]) -> dict[str, int]:
    return {
        "points": sum(counts.values()),
        "unevaluated": counts[PointStatus.UNEVALUATED.value],
        "pending": counts[PointStatus.PENDING.value],
        "evaluated": counts[PointStatus.EVALUATED.value],
        "failed": counts[PointStatus.FAILED.value],
    }


async def progress(store: Store, task: Task) -> Progress:
    """The task's counts, per segment and in all. ``maxPoints`` is per segment, so the
    task's total plan is ``maxPoints`` times its segments; an online study has none."""
    segments = await store.segments.list_for_task(task.id)
    by_segment = await store.summaries.by_segment(
        task.id, [s.name for s in segments], objectives(task)
    )
    total: Counter[str] = sum(by_segment.values(), Counter())
    jobs = {
        "active_jobs": len(task.open_jobs),  # kept by the store, not counted
        "jobs": (
            task.jobs_counted
            if task.jobs_counted is not None
            else await store.jobs.count(task.id, active_only=False)
        ),
    }
    if task.config.online:
        return Progress(max_points=None, **_counted(total), **jobs)
    per_segment = [
        SegmentProgress(
            segment=s.name,
            max_points=task.config.maxPoints,
            **_counted(by_segment.get(s.name, Counter())),
        )
        for s in sorted(segments, key=lambda s: s.index)
    ]
    return Progress(
        max_points=task.config.maxPoints * max(len(segments), 1),
        **_counted(total),
        **jobs,
        segments=per_segment,
    )


def objectives(task: Task) -> list[Direction]:
    """The directions of a multi-objective task; empty for a single-objective one."""
    return task.config.multi_objective


async def front(store: Store, task: Task, directions: list[Direction]) -> list[ParetoPoint]:
    """The Pareto front of each segment's evaluated points, from the summaries that keep
    it as results arrive (never the task's points read in full)."""
    result: list[ParetoPoint] = []
    for segment in sorted(await store.segments.list_for_task(task.id), key=lambda s: s.index):
        result.extend(
            ParetoPoint(point_id=point_id, segment=segment.name, loss=loss, params=params)
            for point_id, loss, params in await store.summaries.front(
                task.id, segment.name, directions
            )
        )
    return result


async def warm_start(store: Store, task: Task) -> WarmStartSummary | None:
    """The warm starts of the task's segments, summed; None without ``warmStartFrom``."""
    if not task.config.warmStartFrom:
        return None
    total = WarmStartSummary()
    skipped: Counter[str] = Counter()
    for segment in await store.segments.list_for_task(task.id):
        if segment.warm_start is not None:
            total.told += segment.warm_start.told
            skipped.update(segment.warm_start.skipped)
    total.skipped = dict(skipped)
    return total


async def task_view(store: Store, task: Task) -> TaskView:
    view = await _task_view(store, task)
    view.warm_start = await warm_start(store, task)
    return view


async def _task_view(store: Store, task: Task) -> TaskView:
    directions = objectives(task)
    if directions:
        return _view(task, await progress(store, task), None, await front(store, task, directions))
    best = None
    if task.best_point_id is not None and task.best_loss is not None:
        point = await store.points.get(task.best_point_id)
        if point is not None:
            best = BestPoint(
                point_id=point.id, loss=task.best_loss, params=point.params, metrics=point.metrics
            )
    return _view(task, await progress(store, task), best, None)


def _view(
    task: Task, progress: Progress, best: BestPoint | None, front: list[ParetoPoint] | None
) -> TaskView:
    return TaskView(
        id=task.id,
        name=task.name,
        owner=task.owner,
        status=task.status,
        reason=task.reason,
        config=task.config,
        created=task.created,
        updated=task.updated,
        progress=progress,
        warnings=task.config.warnings,
        waiting=task.waiting if task.status in ACTIVE_TASK_STATES else "",
        best=best,
        pareto_front=front,
        links=task.links,
    )
