"""Observed run times of each task's jobs per site and compute class.

The api adds a job's run time (first start to its ``finished`` report) when the job
finishes; the broker prefers, for the task's next jobs, the class that finished them
fastest. One document per (task, site, class) with a count and a sum, so an update is
one ``$inc`` and a read one query per assignment pass.
"""

from __future__ import annotations

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from shared.store.base import Doc
from shared.store.records import ClassKey


class RuntimeRepository:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.col = collection

    async def create_indexes(self) -> None:
        await self.col.create_index([("task_id", ASCENDING)])

    async def observe(self, task_id: str, site: str, compute_class: str, seconds: float) -> None:
        await self.col.update_one(
            {"_id": f"{task_id}|{site}|{compute_class}"},
            {
                "$set": {"task_id": task_id, "site": site, "compute_class": compute_class},
                "$inc": {"count": 1, "seconds": max(0.0, seconds)},
            },
            upsert=True,
        )

    async def means(self, task_ids: list[str]) -> dict[str, dict[ClassKey, float]]:
        """task -> (site, class) -> mean run time in seconds, for the tasks given."""
        found: dict[str, dict[ClassKey, float]] = {}
        async for doc in self.col.find({"task_id": {"$in": task_ids}}):
            if doc.get("count"):
                key = (str(doc["site"]), str(doc["compute_class"]))
                found.setdefault(str(doc["task_id"]), {})[key] = doc["seconds"] / doc["count"]
        return found
