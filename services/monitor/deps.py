"""What the monitor's routers share: its state and the caller's own task."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from services.api.deps import CurrentUser
from services.monitor import reads, views
from services.monitor.cache import CostBounded, SnapshotCache, TaskEntry
from services.monitor.live import Hub
from services.monitor.occupancy import Occupancy
from services.monitor.summaries import Summaries
from services.monitor.views import StoredView
from shared.artifacts import ArtifactStore
from shared.config import MonitorSettings
from shared.domain.models import Task
from shared.store import Store


@dataclass
class MonitorState:
    settings: MonitorSettings
    store: Store
    artifacts: ArtifactStore
    cache: SnapshotCache
    summaries: Summaries
    hub: Hub
    occupancy: Occupancy
    job_counts: CostBounded


def get_state(request: Request) -> MonitorState:
    state: MonitorState = request.app.state.monitor
    return state


Monitor = Annotated[MonitorState, Depends(get_state)]


def fresh_for(mon: MonitorState) -> float:
    """How old a loaded entry may be when a request reads it: two live refreshes, so a
    task an open page watches (the live loop refreshes it every interval) is never
    refreshed inline by the page's own requests, and a reader without a stream (the
    CLI, a script) still sees changes within two intervals."""
    return 2 * mon.settings.monitor_refresh_seconds


async def _own(mon: MonitorState, task_id: str, owner: str) -> Task | None:
    """The caller's task record: the cached one while it is fresh (:func:`fresh_for`: a
    zoom or a filter then costs no database read), else read."""
    entry = mon.cache.peek(task_id)
    if entry is not None and time.monotonic() - entry.refreshed < fresh_for(mon):
        return entry.task if entry.task.owner == owner else None
    return await reads.own_task(mon.store, task_id, owner)


async def own_entry(task_id: str, mon: Monitor, user: CurrentUser) -> TaskEntry:
    """The caller's task, loaded in the cache; another user's task is a 404."""
    task = await _own(mon, task_id, user.owner)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    entry = await mon.cache.entry(task, max_age=fresh_for(mon))
    entry.task = task
    return entry


OwnEntry = Annotated[TaskEntry, Depends(own_entry)]


@dataclass
class FirstView:
    """A request of the page's first render: the entry, and while its points are still
    loading, the stored view that stands in for them (``view`` None: ``entry`` is
    loaded)."""

    entry: TaskEntry
    view: StoredView | None
    mon: MonitorState

    async def loaded(self) -> TaskEntry:
        """The entry with its points, waiting for the load if needed."""
        if self.view is None:
            return self.entry
        entry = await self.mon.cache.entry(self.entry.task)
        self.view = None
        self.entry = entry
        return entry


async def first_view(task_id: str, mon: Monitor, user: CurrentUser) -> FirstView:
    """The caller's task for a first-render request: a finished task the monitor has not
    loaded yet, with a stored view, is answered from the view. Its points are loaded by
    the page's next requests (the other charts, which it asks for once it has drawn),
    so the load does not compete with the first render."""
    task = await _own(mon, task_id, user.owner)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    if mon.cache.peek(task.id) is None:
        view = await views.load(mon.store, task)
        if view is not None:
            entry = await mon.cache.shell(task)
            if not entry.loaded:
                entry.task = task
                return FirstView(entry, view, mon)
    entry = await mon.cache.entry(task, max_age=fresh_for(mon))
    entry.task = task
    return FirstView(entry, None, mon)


OwnFirst = Annotated[FirstView, Depends(first_view)]


async def own_task(task_id: str, mon: Monitor, user: CurrentUser) -> Task:
    """The caller's task record, without loading its points."""
    task = await reads.own_task(mon.store, task_id, user.owner)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    return task


OwnTask = Annotated[Task, Depends(own_task)]
