"""Task rows for the list and the task page, from the cache (never a scan per request).

An active task's counts come from its snapshot, loaded in the background on first
sight; a finished task's counts never change, so they are counted once and kept.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from services.monitor import reads
from services.monitor.cache import SnapshotCache, TaskEntry
from services.monitor.schemas import Counts, SegmentRow, TaskDetail, TaskRow
from services.monitor.views import StoredView
from shared.domain.models import ACTIVE_TASK_STATES, Task, TaskStatus
from shared.store import Store

log = logging.getLogger(__name__)
Health = Literal["ok", "warning", "failed"]


def health(task: Task, counts: dict[str, int] | None) -> tuple[Health, str]:
    """The colour a status deserves and a note saying why, if it is not the obvious one."""
    if task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        return "failed", task.reason
    if counts is not None and task.status == TaskStatus.DONE:
        failed, evaluated = counts.get("failed", 0), counts.get("evaluated", 0)
        if failed and not evaluated:
            return "failed", f"every point failed ({failed})"
        if failed:
            return "warning", f"{failed} point(s) failed"
    return "ok", task.reason


class Summaries:
    def __init__(self, store: Store, cache: SnapshotCache) -> None:
        self.store = store
        self.cache = cache
        self._final: dict[str, tuple[int, dict[str, int]]] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._segment_counts: dict[str, int] = {}

    async def counts(self, task: Task, *, wait: bool) -> dict[str, int] | None:
        entry = self.cache.peek(task.id)
        if entry is not None:
            return entry.snapshot.counts()
        final = self._final.get(task.id)
        if final is not None and final[0] == task.version:
            return final[1]
        if wait:
            return await self._count(task)
        if task.id not in self._pending:
            self._pending[task.id] = asyncio.ensure_future(self._background(task))
        return None

    async def _count(self, task: Task) -> dict[str, int]:
        if task.status in ACTIVE_TASK_STATES:
            return (await self.cache.entry(task)).snapshot.counts()
        counts = await reads.status_counts(self.store, task.id)
        self._final[task.id] = (task.version, counts)
        return counts

    async def _background(self, task: Task) -> None:
        try:
            await self._count(task)
        except Exception:
            log.exception("monitor: counting the points of %s failed", task.id)
        finally:
            self._pending.pop(task.id, None)

    async def _segments(self, task: Task) -> int:
        """A task's segments never change: counted once per task."""
        if task.id not in self._segment_counts:
            segments = await self.store.segments.list_for_task(task.id)
            self._segment_counts[task.id] = max(1, len(segments))
        return self._segment_counts[task.id]

    async def row(
        self, task: Task, *, wait: bool = False, counts: dict[str, int] | None = None
    ) -> TaskRow:
        """``counts``: the points per status when the caller knows them already."""
        if counts is None:
            counts = await self.counts(task, wait=wait)
        progress = None
        if counts is not None:
            active = 0
            if task.status in ACTIVE_TASK_STATES and not task.config.online:
                active = reads.active_job_count(task)
            progress = Counts(
                max_points=None
                if task.config.online
                else task.config.maxPoints * await self._segments(task),
                points=sum(counts.values()),
                unevaluated=counts.get("unevaluated", 0),
                pending=counts.get("pending", 0),
                evaluated=counts.get("evaluated", 0),
                failed=counts.get("failed", 0),
                active_jobs=active,
            )
        colour, note = health(task, counts)
        return TaskRow(
            id=task.id,
            name=task.name,
            kind="study" if task.config.online else "task",
            status=task.status.value,
            reason=task.reason,
            waiting=task.waiting if task.status in ACTIVE_TASK_STATES else "",
            health=colour,
            note=note,
            created=task.created,
            updated=task.updated,
            progress=progress,
            best_loss=task.best_loss,
            best_point_id=task.best_point_id,
            objectives=max(1, len(task.config.steering.directions or [])),
        )

    async def detail(self, entry: TaskEntry, view: StoredView | None = None) -> TaskDetail:
        """From the loaded ``entry``, or, while it loads, from the task's stored view."""
        task = entry.task
        snap = entry.snapshot
        if view is not None:
            row = await self.row(task, counts=view.totals())
            segments = [SegmentRow(name=s, counts=view.counts.get(s, {})) for s in entry.segments]
            params = view.params
        else:
            row = await self.row(task, wait=True)
            segments = [SegmentRow(name=s, counts=snap.counts(s)) for s in entry.segments]
            params = list(snap.params)
        name = entry.study.title if entry.study is not None else task.name
        return TaskDetail(
            **{**row.model_dump(), "name": name or row.name},
            owner=task.owner,
            segments=segments,
            directions=[str(d) for d in entry.directions]
            or (["maximize"] if entry.maximize else ["minimize"]),
            params=params,
            pruner=task.config.pruner.name if task.config.pruner.active else "",
            online=task.config.online,
            config=task.config.model_dump(mode="json", exclude_none=True),
        )
