"""What each steering process can run, as it found out at start.

The api and steering are separate processes, often on separate hosts, and only steering
can tell whether its host runs bubblewrap or an image runtime. So each steering process
records its capabilities here at start (and refreshes the record while it runs), and
the api reads them to refuse at submission a task no steering process could run,
instead of accepting it and failing it later.

Which records count (:meth:`SteeringCapabilityRepository.in_force`): those of processes
seen within their ``valid_until``; when none is, the most recent record (a steering
restart must not make the api forget what the host can do). With several live
processes, a task must be runnable by *every* one of them, because any of them may
become the owner of its segment.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import DESCENDING

from shared.store.base import Repository
from shared.store.records import KEEP_EXPIRED, SteeringCapability


class SteeringCapabilityRepository(Repository[SteeringCapability]):
    model = SteeringCapability

    async def create_indexes(self) -> None:
        await self.col.create_index([("seen", DESCENDING)])

    async def record(self, capability: SteeringCapability) -> None:
        """Upsert this process's record; records that ran out a week ago go."""
        doc = capability.model_dump(mode="python", exclude={"id"})
        await self.col.update_one({"_id": capability.id}, {"$set": doc}, upsert=True)
        await self.col.delete_many({"valid_until": {"$lt": capability.seen - KEEP_EXPIRED}})

    async def in_force(self, now: datetime) -> list[SteeringCapability]:
        """The live processes' records, else the latest one; empty if none was ever made."""
        live = await self._find({"valid_until": {"$gte": now}})
        if live:
            return live
        return await self._find({}, sort=[("seen", DESCENDING)], limit=1)


__all__ = ["SteeringCapability", "SteeringCapabilityRepository"]
