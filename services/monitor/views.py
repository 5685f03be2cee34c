"""A finished task's first render without reading its points: the stored view.

When the monitor has loaded a finished task it keeps, in the database, what the first
render of the task's page needs: the points per status of each segment, the parameter
names and the default history series of each segment (:mod:`shared.store.views`). A
monitor that starts later answers the page's first requests from that one document,
so the first visitor after a restart does not wait for 100k points to be read; every
other request (a zoom, a filter, the other charts the page asks for once it has drawn)
loads the points as before.

Only a finished task's view is kept and trusted: its points no longer change, so the
task's version and status are a complete stamp. An active task changes with every
result and is always loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from services.monitor import series
from services.monitor.cache import TaskEntry
from shared.domain.models import ACTIVE_TASK_STATES, Task
from shared.store import Store

log = logging.getLogger(__name__)
DEFAULT_OBJECTIVE = 0


@dataclass(frozen=True)
class StoredView:
    counts: dict[str, dict[str, int]]
    """Points per status, per segment."""
    params: list[str]
    history: dict[str, dict[str, Any]]
    """The default history series (objective 0, no zoom), per segment."""

    def totals(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for counts in self.counts.values():
            for status, n in counts.items():
                found[status] = found.get(status, 0) + n
        return found


def stamp(task: Task) -> dict[str, Any]:
    return {"version": task.version, "status": task.status.value}


def keeps_view(task: Task) -> bool:
    return task.status not in ACTIVE_TASK_STATES


def history(
    entry: TaskEntry, segment: str, objective: int, window: tuple[float, float] | None
) -> dict[str, object]:
    """The history series of the loaded ``entry``, memoised per snapshot version."""
    return entry.memo(
        ("history", segment, objective, window),
        lambda: series.history(
            entry.snapshot,
            segment,
            objective=objective,
            maximize=entry.direction_of(objective),
            x_range=window,
        ),
    )


async def load(store: Store, task: Task) -> StoredView | None:
    """The task's stored view, if the task is finished and has not changed since."""
    if not keeps_view(task):
        return None
    doc = await store.views.get(task.id)
    if doc is None or doc.get("stamp") != stamp(task):
        return None
    return StoredView(
        counts={s["name"]: s["counts"] for s in doc["segments"]},
        params=list(doc["params"]),
        history={s["name"]: s["history"] for s in doc["segments"]},
    )


async def save(store: Store, entry: TaskEntry) -> None:
    """Keep the view of a loaded, finished task (once per stamp)."""
    task = entry.task
    if not keeps_view(task):
        return
    current = await store.views.get(task.id)
    if current is not None and current.get("stamp") == stamp(task):
        return
    segments = [
        {
            "name": seg,
            "counts": entry.snapshot.counts(seg),
            "history": history(entry, seg, DEFAULT_OBJECTIVE, None),
        }
        for seg in entry.segments
    ]
    await store.views.put(
        task.id, stamp(task), {"segments": segments, "params": list(entry.snapshot.params)}
    )
