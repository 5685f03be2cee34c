"""Segments in memory (see :mod:`shared.store.segments` for the MongoDB twin)."""

from __future__ import annotations

from datetime import datetime

from shared.clock import as_utc
from shared.domain.models import Segment, WarmStartSummary
from shared.store.documents import Doc, to_doc
from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table, Unique


class MemorySegmentRepository(MemoryRepository[Segment]):
    model = Segment

    def __init__(self) -> None:
        unique = Unique("task_id_1_index_1", lambda d: (d["task_id"], d["index"]))
        super().__init__(Table("segments", (unique,)))

    async def insert_many(self, segments: list[Segment]) -> None:
        for segment in segments:  # in order, as an ordered insert_many
            self.table.insert(to_doc(segment))

    async def list_for_task(self, task_id: str) -> list[Segment]:
        return self._find(lambda d: d["task_id"] == task_id, sort=lambda d: d["index"])

    async def set_warm_start(self, segment_id: str, summary: WarmStartSummary) -> None:
        if self.table.get(segment_id) is not None:
            value = summary.model_dump(mode="json")
            self.table.update(segment_id, lambda d: d.update(warm_start=value))

    async def mark_exhausted(self, segment_id: str) -> None:
        if self.table.get(segment_id) is not None:
            self.table.update(segment_id, lambda d: d.update(exhausted=True))

    async def claim(self, segment_id: str, owner: str, now: datetime, until: datetime) -> bool:
        doc = self.table.get(segment_id)
        if doc is None:
            return False
        held_by, held_until = doc.get("owner"), doc.get("owner_until")
        expired = isinstance(held_until, datetime) and as_utc(held_until) < now
        if held_by is not None and held_by != owner and not expired:
            return False
        self.table.update(segment_id, lambda d: d.update(owner=owner, owner_until=until))
        return True

    async def owner_of(self, segment_id: str, now: datetime) -> str | None:
        doc = self.table.get(segment_id)
        if doc is None or doc.get("owner") is None:
            return None
        until = doc.get("owner_until")
        if not isinstance(until, datetime) or as_utc(until) < now:
            return None
        return str(doc["owner"])

    async def release(self, segment_ids: list[str], owner: str) -> None:
        for id_ in segment_ids:
            doc = self.table.get(id_)
            if doc is not None and doc.get("owner") == owner:
                self.table.update(id_, _unowned)


def _unowned(doc: Doc) -> None:
    doc.update(owner=None, owner_until=None)
