"""Segments: the independently optimised parts of a task.

Each segment has at most one steering owner at a time: a lease (``owner``,
``owner_until``) that the owner renews and another steering process may take once it
has expired. Only the owner generates the segment's points and keeps its optimiser.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING

from shared.clock import as_utc
from shared.domain.models import Segment, WarmStartSummary
from shared.store.base import Repository

"""The server's error code for a unique key taken."""


class SegmentRepository(Repository[Segment]):
    model = Segment

    async def create_indexes(self) -> None:
        await self.col.create_index([("task_id", ASCENDING), ("index", ASCENDING)], unique=True)

    async def insert_many(self, segments: list[Segment]) -> None:
        """In order; raises :class:`~shared.store.errors.DuplicateKeyError` at the first
        segment whose id or (task, index) is taken (those before it are stored)."""
        await self._insert_many(segments, "segment")

    async def list_for_task(self, task_id: str) -> list[Segment]:
        return await self._find({"task_id": task_id}, sort=[("index", ASCENDING)])

    async def set_warm_start(self, segment_id: str, summary: WarmStartSummary) -> None:
        await self.col.update_one(
            {"_id": segment_id}, {"$set": {"warm_start": summary.model_dump(mode="json")}}
        )

    async def mark_exhausted(self, segment_id: str) -> None:
        await self.col.update_one({"_id": segment_id}, {"$set": {"exhausted": True}})

    async def claim(self, segment_id: str, owner: str, now: datetime, until: datetime) -> bool:
        """Take or renew the segment's steering lease: True when ``owner`` holds it
        until ``until``; False while another owner's lease runs."""
        result = await self.col.update_one(
            {
                "_id": segment_id,
                "$or": [
                    {"owner": None},
                    {"owner": owner},
                    {"owner_until": {"$lt": now}},
                ],
            },
            {"$set": {"owner": owner, "owner_until": until}},
        )
        return result.matched_count == 1

    async def owner_of(self, segment_id: str, now: datetime) -> str | None:
        """The owner whose lease on the segment runs at ``now``, if any."""
        doc = await self.col.find_one({"_id": segment_id}, {"owner": 1, "owner_until": 1})
        if doc is None or doc.get("owner") is None:
            return None
        until = doc.get("owner_until")
        if not isinstance(until, datetime) or as_utc(until) < now:
            return None
        return str(doc["owner"])

    async def release(self, segment_ids: list[str], owner: str) -> None:
        """Give up ``owner``'s leases (at shutdown), so another process need not wait."""
        if segment_ids:
            await self.col.update_many(
                {"_id": {"$in": segment_ids}, "owner": owner},
                {"$set": {"owner": None, "owner_until": None}},
            )
