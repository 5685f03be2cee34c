"""Segments: the independently optimised parts of a task (one, ``main``, for now)."""

from __future__ import annotations

from pymongo import ASCENDING

from shared.domain.models import Segment
from shared.store.base import Repository, to_doc


class SegmentRepository(Repository[Segment]):
    model = Segment

    async def create_indexes(self) -> None:
        await self.col.create_index([("task_id", ASCENDING), ("index", ASCENDING)], unique=True)

    async def insert_many(self, segments: list[Segment]) -> None:
        await self.col.insert_many([to_doc(s) for s in segments])

    async def list_for_task(self, task_id: str) -> list[Segment]:
        return await self._find({"task_id": task_id}, sort=[("index", ASCENDING)])

    async def mark_exhausted(self, segment_id: str) -> None:
        await self.col.update_one({"_id": segment_id}, {"$set": {"exhausted": True}})
