"""The monitor's per-task cache: a snapshot of the points, refreshed by what changed,
and the series derived from it, kept until the snapshot's version moves.

One load per task whatever the number of open tabs (single flight under the entry's
lock); a refresh reads the task record and, per segment, only the new and the open
points. Entries nobody asked for in :data:`IDLE_SECONDS` are dropped, and at most
``max_tasks`` are kept.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.monitor import keeper, reads
from services.monitor.snapshot import TaskSnapshot
from shared.domain.models import Task
from shared.domain.taskconfig import Direction
from shared.searchspace import SearchSpace, SearchSpaceError, parse_search_space
from shared.store import Store
from shared.store.records import Study

log = logging.getLogger(__name__)
T = TypeVar("T")
P = TypeVar("P")
IDLE_SECONDS = 600.0
MAX_DERIVED = 64
"""Series kept per task (the oldest asked first goes)."""
SAVE_SECONDS = 10.0
"""A loaded task's changed parts are stored at most this often (a growing task rewrites
its last part each time); a fresh monitor reads from the points what came since."""
SLOW_SERIES_SECONDS = 30.0
"""A slow series (parameter importance) is recomputed at most this often while the
task changes; meanwhile the previous answer is served."""


@dataclass
class TaskEntry:
    task: Task
    snapshot: TaskSnapshot
    segments: list[str]
    spaces: dict[str, SearchSpace]
    directions: list[Direction]
    study: Study | None
    loaded: bool = False
    refreshed: float = 0.0
    saved: float = -math.inf
    """When its changed parts were last stored (monotonic)."""
    """When the snapshot was last brought up to date (monotonic)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    used: float = field(default_factory=time.monotonic)
    derived: dict[tuple[Any, ...], tuple[int, float, Any]] = field(default_factory=dict)
    computing: dict[tuple[Any, ...], asyncio.Task[Any]] = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        if self.study is not None:
            return self.study.direction == "maximize"
        return bool(self.directions) and self.directions[0] == "maximize"

    def direction_of(self, objective: int) -> bool:
        if len(self.directions) > objective:
            return self.directions[objective] == "maximize"
        return self.maximize

    def log_params(self, segment: str) -> frozenset[str]:
        space = self.spaces.get(segment)
        return frozenset(d.name for d in space.dimensions if d.log) if space else frozenset()

    def memo(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """``compute()`` once per snapshot version."""
        version = self.snapshot.version
        hit = self.derived.get(key)
        if hit is not None and hit[0] == version:
            value: T = hit[2]
            return value
        value = compute()
        self.derived.pop(key, None)
        self.derived[key] = (version, time.monotonic(), value)
        while len(self.derived) > MAX_DERIVED:  # zoom windows are keys too
            self.derived.pop(next(iter(self.derived)))
        return value

    async def slow(
        self, key: tuple[Any, ...], prepare: Callable[[], P], compute: Callable[[P], T]
    ) -> tuple[T, bool]:
        """``compute(prepare())``, the first here, the second in a worker thread, at most
        every :data:`SLOW_SERIES_SECONDS` while the version moves; returns the value and
        whether it is current."""
        version = self.snapshot.version
        hit = self.derived.get(key)
        if hit is not None and (
            hit[0] == version or time.monotonic() - hit[1] < SLOW_SERIES_SECONDS
        ):
            value: T = hit[2]
            return value, hit[0] == version
        running = self.computing.get(key)
        if running is None:
            running = asyncio.ensure_future(asyncio.to_thread(compute, prepare()))
            self.computing[key] = running
        try:
            value = await asyncio.shield(running)
        finally:
            if running.done():
                self.computing.pop(key, None)
        self.derived[key] = (version, time.monotonic(), value)
        return value, True


def _directions(task: Task) -> list[Direction]:
    return list(task.config.steering.directions or [])


def _spaces(segments: list[Any]) -> dict[str, SearchSpace]:
    spaces: dict[str, SearchSpace] = {}
    for segment in segments:
        try:
            spaces[segment.name] = parse_search_space(segment.search_space)
        except SearchSpaceError:
            continue
    return spaces


Loaded = Callable[[TaskEntry], Awaitable[None]]


class SnapshotCache:
    def __init__(
        self, store: Store, *, max_tasks: int = 32, on_loaded: Loaded | None = None
    ) -> None:
        self.store = store
        self.max_tasks = max_tasks
        self.on_loaded = on_loaded
        """Called after each full load (the stored views keep what it computed)."""
        self.entries: dict[str, TaskEntry] = {}
        self.loads = 0
        """How many full loads were made (a test's way to see single flight)."""
        self._kept: dict[str, float] = {}
        self._saving: dict[str, asyncio.Future[None]] = {}
        self._shapes: dict[str, tuple[list[str], int, set[str]]] = {}

    async def entry(self, task: Task, *, max_age: float | None = None) -> TaskEntry:
        """The task's loaded entry, loading it first if needed (once, whoever asks).

        With ``max_age``, an entry last brought up to date longer ago than that is
        refreshed first: the live hub refreshes only what an event stream watches, and a
        reader without one (the CLI, a script) must not see the first request's state
        for ever."""
        entry = await self._entry(task)
        if not entry.loaded:
            await self._load_once(entry)
        elif max_age is not None and time.monotonic() - entry.refreshed > max_age:
            await self.refresh(task.id)
        return entry

    async def shell(self, task: Task) -> TaskEntry:
        """The task's entry at once, loaded or not (an unloaded one's snapshot must not
        be read): the next :meth:`entry` loads it."""
        return await self._entry(task)

    async def _entry(self, task: Task) -> TaskEntry:
        entry = self.entries.get(task.id)
        if entry is None:
            entry = await self._new_entry(task)
            entry = self.entries.setdefault(task.id, entry)
            self._evict()
        entry.used = time.monotonic()
        return entry

    async def _load_once(self, entry: TaskEntry) -> None:
        async with entry.lock:
            if not entry.loaded:
                await self._load(entry)

    def peek(self, task_id: str) -> TaskEntry | None:
        entry = self.entries.get(task_id)
        return entry if entry is not None and entry.loaded else None

    async def _new_entry(self, task: Task) -> TaskEntry:
        segments = await reads.segments(self.store, task.id)
        study = await reads.study(self.store, task.id) if task.config.online else None
        spaces = _spaces(segments)
        categorical = {
            dim.name
            for space in spaces.values()
            for dim in space.dimensions
            if dim.kind == "categorical"
        }
        directions = _directions(task)
        return TaskEntry(
            task=task,
            snapshot=TaskSnapshot(max(1, len(directions)), categorical),
            segments=[s.name for s in segments] or ["main"],
            spaces=spaces,
            directions=directions,
            study=study,
        )

    async def _load(self, entry: TaskEntry) -> None:
        """From the stored parts and the points they lack; what was read from the points
        is stored back."""
        await keeper.restore(self.store, entry.task.id, entry.snapshot, entry.segments)
        entry.loaded = True
        entry.refreshed = time.monotonic()
        self.loads += 1
        self._save_soon(entry)
        if self.on_loaded is not None:
            try:
                await self.on_loaded(entry)
            except Exception:
                log.exception("monitor: keeping the view of %s failed", entry.task.id)

    async def refresh(self, task_id: str) -> bool:
        """Bring a loaded entry up to date; True when the task or its points changed."""
        entry = self.peek(task_id)
        if entry is None:
            return False
        async with entry.lock:
            started = time.monotonic()
            task = await self.store.tasks.get(task_id)
            if task is None:
                self.entries.pop(task_id, None)
                return True
            changed = (task.version, task.status, task.best_loss, task.reason) != (
                entry.task.version,
                entry.task.status,
                entry.task.best_loss,
                entry.task.reason,
            )
            entry.task = task
            snap = entry.snapshot
            open_points = snap.open_indices()
            for segment in entry.segments:
                docs = await reads.changed_points(
                    self.store,
                    task_id,
                    segment,
                    snap.next_index(segment),
                    open_points.get(segment, []),
                )
                if snap.apply(docs):
                    changed = True
            entry.refreshed = started
            if started - entry.saved >= SAVE_SECONDS:
                self._save_soon(entry)
        return changed

    def _save_soon(self, entry: TaskEntry) -> None:
        """Store the parts that changed, beside the request that loaded or refreshed the
        entry (it does not wait for the writes); one save per task at a time."""
        if not entry.snapshot.dirty or entry.task.id in self._saving:
            return
        entry.saved = time.monotonic()
        self._saving[entry.task.id] = asyncio.ensure_future(self._save(entry))

    async def _save(self, entry: TaskEntry) -> None:
        """A failure is logged; the parts stay dirty and the next save retries."""
        try:
            await keeper.save(self.store, entry.task.id, entry.snapshot)
        except Exception:
            log.exception("monitor: storing the snapshot of %s failed", entry.task.id)
        finally:
            self._saving.pop(entry.task.id, None)

    async def flush(self) -> None:
        """Wait for the saves under way (tests; a clean stop)."""
        while self._saving:
            await asyncio.gather(*self._saving.values(), return_exceptions=True)

    async def keep(self, task: Task, *, every: float = 0.0) -> int:
        """Keep the stored snapshot of ``task`` current (the periodic pass), at most
        once per ``every`` seconds: through its entry if one is loaded (an open page's
        live refresh keeps it already), else part by part without holding the task.
        Returns how many parts were written outside an entry."""
        now = time.monotonic()
        if now - self._kept.get(task.id, -math.inf) < every:
            return 0
        self._kept[task.id] = now
        entry = self.peek(task.id)
        if entry is not None:
            if now - entry.refreshed >= every:
                await self.refresh(task.id)
            return 0
        shape = self._shapes.get(task.id)
        if shape is None:
            shell = self.entries.get(task.id) or await self._new_entry(task)
            snap = shell.snapshot
            shape = self._shapes[task.id] = (shell.segments, snap.objectives, snap.categorical)
            while len(self._shapes) > 10 * self.max_tasks:
                self._shapes.pop(next(iter(self._shapes)))
        return await keeper.keep(self.store, task.id, *shape)

    def forget_kept(self, active: set[str]) -> None:
        """Drop what :meth:`keep` remembers of tasks that are no longer active."""
        for task_id in [t for t in self._kept if t not in active]:
            self._kept.pop(task_id, None)
            self._shapes.pop(task_id, None)

    def _evict(self) -> None:
        now = time.monotonic()
        for task_id, entry in list(self.entries.items()):
            if now - entry.used > IDLE_SECONDS:
                del self.entries[task_id]
        while len(self.entries) > self.max_tasks:
            oldest = min(self.entries, key=lambda t: self.entries[t].used)
            del self.entries[oldest]


class CostBounded:
    """Answers kept for at least ``share``⁻¹ times as long as they took to compute, so a
    scan that takes a second on a huge task runs at most every ten seconds however often
    the page asks (and a cheap one stays fresh)."""

    def __init__(self, *, share: float = 0.1, floor: float = 2.0) -> None:
        self.share, self.floor = share, floor
        self._kept: dict[Any, tuple[float, float, Any]] = {}
        self._locks: dict[Any, asyncio.Lock] = {}

    async def get(self, key: Any, compute: Callable[[], Awaitable[T]]) -> T:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            kept = self._kept.get(key)
            now = time.monotonic()
            if kept is not None and now - kept[0] < max(self.floor, kept[1] / self.share):
                value: T = kept[2]
                return value
            value = await compute()
            self._kept[key] = (time.monotonic(), time.monotonic() - now, value)
            if len(self._kept) > 1000:
                self._kept.pop(next(iter(self._kept)))
            return value
