"""Live updates: one refresh loop for every open dashboard, pushed as server-sent events.

Each open page holds one event stream naming what it shows (a user's task list, or
one task). The hub refreshes only what some stream watches, once per interval however
many streams watch it, and wakes each stream whose subject changed; a stream that
disconnects unregisters, and with no stream left the loop does no work at all. Pages
fetch what changed after an event, one request at a time, so they never pile up polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from services.monitor import reads
from services.monitor.cache import SnapshotCache
from shared.domain.models import ACTIVE_TASK_STATES
from shared.store import Store

log = logging.getLogger(__name__)

PING_SECONDS = 15.0


@dataclass(eq=False)
class Subscription:
    owner: str
    task_id: str | None
    """None: the owner's task list."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0


class Hub:
    def __init__(self, store: Store, cache: SnapshotCache, *, interval: float) -> None:
        self.store = store
        self.cache = cache
        self.interval = interval
        self.subscriptions: set[Subscription] = set()
        self._changed = asyncio.Event()
        self._list_marks: dict[str, tuple[object, ...]] = {}
        self.ticks = 0
        self.idle = True
        """True while the loop waits for a first subscriber (and does nothing)."""

    def watched(self) -> tuple[set[str], set[str]]:
        """The task ids and the owners (task lists) some stream watches."""
        tasks = {s.task_id for s in self.subscriptions if s.task_id is not None}
        owners = {s.owner for s in self.subscriptions if s.task_id is None}
        return tasks, owners

    @contextlib.asynccontextmanager
    async def subscribe(self, owner: str, task_id: str | None) -> AsyncIterator[Subscription]:
        sub = Subscription(owner=owner, task_id=task_id)
        self.subscriptions.add(sub)
        self._changed.set()
        try:
            yield sub
        finally:
            self.subscriptions.discard(sub)
            if not any(s.owner == owner and s.task_id is None for s in self.subscriptions):
                self._list_marks.pop(owner, None)

    async def tick(self) -> set[str]:
        """One refresh of everything watched; returns the task ids it refreshed."""
        self.ticks += 1
        tasks, owners = self.watched()
        refreshed: set[str] = set()
        changed: set[str] = set()
        for task_id in sorted(tasks):
            refreshed.add(task_id)
            if await self.cache.refresh(task_id):
                changed.add(task_id)
        changed_owners = {o for o in owners if await self._list_changed(o, refreshed)}
        for sub in list(self.subscriptions):
            if sub.task_id in changed or (sub.task_id is None and sub.owner in changed_owners):
                sub.wake.set()
        return refreshed

    async def _list_changed(self, owner: str, refreshed: set[str]) -> bool:
        """Has anything a task list shows moved? Active tasks are refreshed too (their
        progress moves); a finished one only when its record changes."""
        tasks = await reads.own_tasks(self.store, owner, limit=200)
        for task in tasks:
            if task.status in ACTIVE_TASK_STATES and task.id not in refreshed:
                if self.cache.peek(task.id) is not None:
                    await self.cache.refresh(task.id)
                refreshed.add(task.id)
        mark = tuple((t.id, t.version, t.status, t.best_loss, self._version(t.id)) for t in tasks)
        before = self._list_marks.get(owner)
        self._list_marks[owner] = mark
        return before is not None and before != mark

    def _version(self, task_id: str) -> int:
        entry = self.cache.peek(task_id)
        return -1 if entry is None else entry.snapshot.version

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every ``interval`` while something is watched; sleep otherwise."""
        while not stop.is_set():
            if not self.subscriptions:
                self._changed.clear()
                self.idle = True
                await _first(stop.wait(), self._changed.wait())
                continue
            self.idle = False
            try:
                await self.tick()
            except Exception:
                log.exception("monitor: live refresh failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)

    def counts(self) -> Counter[str | None]:
        return Counter(s.task_id for s in self.subscriptions)


async def _first(*waits: object) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]  # type: ignore[call-overload]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
