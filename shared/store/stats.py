"""Counts over whole collections, for the operations metrics (not for the services'
decisions, which read their own aggregates)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from shared.store.base import Doc


class StatsRepository:
    def __init__(self, tasks: AsyncCollection[Doc], jobs: AsyncCollection[Doc]) -> None:
        self.tasks = tasks
        self.jobs = jobs

    async def tasks_by_status(self) -> dict[str, int]:
        return await _by_status(self.tasks, {})

    async def task_owners(self) -> set[str]:
        return {str(owner) for owner in await self.tasks.distinct("owner")}

    async def jobs_by_status(self, statuses: list[str]) -> dict[str, int]:
        """Only ``statuses`` (the active ones: terminal jobs only ever pile up)."""
        counts = await _by_status(self.jobs, {"status": {"$in": statuses}})
        return {s: counts.get(s, 0) for s in statuses}


async def _by_status(col: AsyncCollection[Doc], match: dict[str, Any]) -> dict[str, int]:
    cursor = await col.aggregate(
        [{"$match": match}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    )
    return {str(doc["_id"]): int(doc["n"]) async for doc in cursor}
