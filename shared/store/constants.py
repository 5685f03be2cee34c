"""What never changes once written, read once per process: a task's owner and config,
and its segments' names, spaces and files.

A task's status, best loss and counters change, and so do a segment's steering lease,
``exhausted`` flag and warm-start summary: those are never served from here, which is
why the cached records are their own types and not :class:`Task` or :class:`Segment`.
Nothing here can be stale, so there is nothing to invalidate; the cache is bounded
(least recently used out) and a miss is not remembered, so a task inserted after a
lookup found nothing is found by the next one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from shared.domain.models import Segment, Task
from shared.domain.taskconfig import TaskConfig

MAX_TASKS = 4096


@dataclass(frozen=True)
class TaskConstants:
    id: str
    owner: str
    config: TaskConfig
    files: dict[str, str]
    """The task's files as submitted (never changed)."""


@dataclass(frozen=True)
class SegmentConstants:
    id: str
    name: str
    index: int
    search_space: dict[str, Any]
    files: tuple[str, ...]
    datasets: tuple[str, ...]


class _Tasks(Protocol):
    async def get(self, id_: str) -> Task | None: ...


class _Segments(Protocol):
    async def list_for_task(self, task_id: str) -> list[Segment]: ...


class Constants:
    """One process's cache of the immutable parts of tasks and segments."""

    def __init__(self, tasks: _Tasks, segments: _Segments, *, max_tasks: int = MAX_TASKS) -> None:
        self._tasks_repo = tasks
        self._segments_repo = segments
        self._max = max_tasks
        self._tasks: OrderedDict[str, TaskConstants] = OrderedDict()
        self._segments: OrderedDict[str, tuple[SegmentConstants, ...]] = OrderedDict()
        self.reads = 0
        """Database reads made (for tests and metrics)."""

    async def task(self, task_id: str) -> TaskConstants | None:
        cached = self._tasks.get(task_id)
        if cached is not None:
            self._tasks.move_to_end(task_id)
            return cached
        self.reads += 1
        task = await self._tasks_repo.get(task_id)
        if task is None:
            return None
        found = TaskConstants(id=task.id, owner=task.owner, config=task.config, files=task.files)
        self._keep(self._tasks, task_id, found)
        return found

    async def segments(self, task_id: str) -> tuple[SegmentConstants, ...]:
        """The task's segments in index order; empty (and not remembered) before the
        task's segments are written: they are inserted before the task itself."""
        cached = self._segments.get(task_id)
        if cached is not None:
            self._segments.move_to_end(task_id)
            return cached
        self.reads += 1
        rows = await self._segments_repo.list_for_task(task_id)
        found = tuple(
            SegmentConstants(
                id=s.id,
                name=s.name,
                index=s.index,
                search_space=s.search_space,
                files=tuple(s.files),
                datasets=tuple(s.datasets),
            )
            for s in sorted(rows, key=lambda s: s.index)
        )
        if found:
            self._keep(self._segments, task_id, found)
        return found

    def _keep(self, cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._max:
            cache.popitem(last=False)
