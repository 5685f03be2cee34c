"""Views the monitor computed and keeps for its next start: per task, what the first
render of its page needs (counts, parameter names, the default history series).

A view is a cache, not a record: it carries the stamp of the task it was computed from
(version and status), and a reader trusts it only while the task still has that stamp.
Losing the collection costs one full read of a task's points, nothing else.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from shared.store.documents import Doc


class ViewRepository:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.col = collection

    async def create_indexes(self) -> None:
        """Read by ``_id`` (the task id) only."""

    async def get(self, task_id: str) -> Doc | None:
        return await self.col.find_one({"_id": task_id})

    async def put(self, task_id: str, stamp: dict[str, Any], body: dict[str, Any]) -> None:
        """Replace the task's view (last writer wins: two monitors write the same)."""
        await self.col.replace_one(
            {"_id": task_id}, {"_id": task_id, "stamp": stamp, **body}, upsert=True
        )
