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
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from shared.store.points import OPEN_STATUSES, PointRepository

OPEN = {s.value for s in OPEN_STATUSES}


class PointSummaries:
    def __init__(
        self, collection: AsyncCollection[dict[str, Any]], points: PointRepository
    ) -> None:
        self.col = collection
        self.points = points

    async def counts(self, task_id: str, segment: str) -> Counter[str]:
        """The segment's points by status, as they are now."""
        key = f"{task_id}.{segment}"
        doc = await self.col.find_one({"_id": key})
        stored = _Summary.of(doc)
        summary = _Summary.of(doc)
        found = await self.points.new_and_open(
            task_id, segment, summary.next_index, sorted(summary.open)
        )
        for point in found:
            if point.index in summary.open or point.index >= summary.next_index:
                summary.see(point.index, point.status.value)
        summary.next_index = max([summary.next_index, *(p.index + 1 for p in found)])
        if summary != stored:
            await self.col.update_one(
                {"_id": key, "version": stored.version} if doc else {"_id": key},
                {"$set": {"task_id": task_id, **summary.fields(stored.version + 1)}},
                upsert=doc is None,
            )
        counts = Counter(summary.closed)
        counts.update(summary.open.values())
        return counts

    async def by_segment(self, task_id: str, segments: list[str]) -> dict[str, Counter[str]]:
        return {name: await self.counts(task_id, name) for name in segments}


@dataclass
class _Summary:
    next_index: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    open: dict[int, str] = field(default_factory=dict)
    version: int = field(default=0, compare=False)

    @classmethod
    def of(cls, doc: dict[str, Any] | None) -> _Summary:
        if doc is None:
            return cls()
        return cls(
            next_index=int(doc.get("next_index", 0)),
            closed=Counter({k: int(v) for k, v in (doc.get("closed") or {}).items()}),
            open={int(i): str(s) for i, s in (doc.get("open") or {}).items()},
            version=int(doc.get("version", 0)),
        )

    def see(self, index: int, status: str) -> None:
        if status in OPEN:
            self.open[index] = status
        else:
            self.open.pop(index, None)
            self.closed[status] += 1

    def fields(self, version: int) -> dict[str, Any]:
        return {
            "next_index": self.next_index,
            "closed": dict(self.closed),
            "open": {str(i): s for i, s in self.open.items()},
            "version": version,
        }
