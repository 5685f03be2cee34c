"""Per segment, how many points are in each status, kept so a task view costs the
same at 100 points as at 100,000.

A summary is derived from the points, never incremented beside them, so it cannot
drift: it records up to which index every point has been seen (``next_index``), how
many of those are closed (evaluated or failed: a closed point never opens again) and
the open ones by index with their last seen status. Bringing it up to date reads only
the points from ``next_index`` on and the open ones (:meth:`PointRepository.new_and_open`),
whoever asks; the result is written back if no one else wrote a newer one meanwhile
(``version``), and either is right. Like the steering's own incremental reads, it relies
on a segment's indices being given out in order (the steering of a segment holds its
lease while it inserts).

A multi-objective segment's summary also keeps its Pareto front, folded point by point
as they close (:func:`shared.domain.pareto.fold`), for the directions it was first asked
with (``front_of``); every later refresh folds with those, whoever asks. A summary that
kept no front yet (written before anyone asked for one) builds it once from the
segment's evaluated points.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from shared.domain.models import Point, PointStatus
from shared.domain.pareto import Direction, FrontMember, fold
from shared.store.points import PointRepository
from shared.store.transitions import OPEN_STATUSES

OPEN = {s.value for s in OPEN_STATUSES}


class PointSummaries:
    def __init__(
        self, collection: AsyncCollection[dict[str, Any]], points: PointRepository
    ) -> None:
        self.col = collection
        self.points = points

    async def counts(
        self, task_id: str, segment: str, directions: Sequence[Direction] = ()
    ) -> Counter[str]:
        """The segment's points by status, as they are now. ``directions`` (a
        multi-objective task's) start keeping the segment's front if none is kept yet."""
        summary = await self._refresh(task_id, segment, directions)
        counts = Counter(summary.closed)
        counts.update(summary.open.values())
        return counts

    async def by_segment(
        self, task_id: str, segments: list[str], directions: Sequence[Direction] = ()
    ) -> dict[str, Counter[str]]:
        return {name: await self.counts(task_id, name, directions) for name in segments}

    async def front(
        self, task_id: str, segment: str, directions: Sequence[Direction]
    ) -> list[FrontMember]:
        """The segment's Pareto front for ``directions``, in the order its points closed."""
        summary = await self._refresh(task_id, segment, directions)
        return list(summary.front)

    async def _refresh(
        self, task_id: str, segment: str, directions: Sequence[Direction]
    ) -> _Summary:
        key = f"{task_id}.{segment}"
        doc = await self.col.find_one({"_id": key})
        stored = _Summary.of(doc)
        summary = _Summary.of(doc)
        if directions and summary.front_of is None:
            await self._start_front(summary, task_id, segment, list(directions))
        found = await self.points.new_and_open(
            task_id, segment, summary.next_index, sorted(summary.open)
        )
        for point in found:
            if point.index in summary.open or point.index >= summary.next_index:
                summary.see(point)
        summary.next_index = max([summary.next_index, *(p.index + 1 for p in found)])
        if summary != stored:
            await self.col.update_one(
                {"_id": key, "version": stored.version} if doc else {"_id": key},
                {"$set": {"task_id": task_id, **summary.fields(stored.version + 1)}},
                upsert=doc is None,
            )
        return summary

    async def _start_front(
        self, summary: _Summary, task_id: str, segment: str, directions: list[Direction]
    ) -> None:
        """Keep a front from now on: of the points already closed, read once (none for a
        summary not written yet)."""
        summary.front_of = directions
        if summary.next_index == 0:
            return
        for point in await self.points.list_for_segment(task_id, segment):
            if point.index < summary.next_index and point.index not in summary.open:
                summary.fold(point)


@dataclass
class _Summary:
    next_index: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    open: dict[int, str] = field(default_factory=dict)
    front_of: list[Direction] | None = None
    """The directions the front is kept for; None: no front is kept."""
    front: list[FrontMember] = field(default_factory=list)
    version: int = field(default=0, compare=False)

    @classmethod
    def of(cls, doc: dict[str, Any] | None) -> _Summary:
        if doc is None:
            return cls()
        front_of = doc.get("front_of")
        return cls(
            next_index=int(doc.get("next_index", 0)),
            closed=Counter({k: int(v) for k, v in (doc.get("closed") or {}).items()}),
            open={int(i): str(s) for i, s in (doc.get("open") or {}).items()},
            front_of=list(front_of) if front_of is not None else None,
            front=[
                (str(m["id"]), [float(v) for v in m["loss"]], dict(m.get("params") or {}))
                for m in doc.get("front") or []
            ],
            version=int(doc.get("version", 0)),
        )

    def see(self, point: Point) -> None:
        status = point.status.value
        if status in OPEN:
            self.open[point.index] = status
        else:
            self.open.pop(point.index, None)
            self.closed[status] += 1
            self.fold(point)

    def fold(self, point: Point) -> None:
        """Add an evaluated point to the front, if one is kept."""
        if self.front_of is None or point.status is not PointStatus.EVALUATED:
            return
        if not isinstance(point.loss, list):
            return
        pairs = [((pid, params), loss) for pid, loss, params in self.front]
        folded = fold(pairs, (point.id, point.params), point.loss, self.front_of)
        self.front = [(pid, loss, params) for (pid, params), loss in folded]

    def fields(self, version: int) -> dict[str, Any]:
        return {
            "next_index": self.next_index,
            "closed": dict(self.closed),
            "open": {str(i): s for i, s in self.open.items()},
            "front_of": self.front_of,
            "front": [{"id": i, "loss": loss, "params": params} for i, loss, params in self.front],
            "version": version,
        }
