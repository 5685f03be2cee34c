"""Steering capability records in memory (see :mod:`shared.store.steering`)."""

from __future__ import annotations

from datetime import datetime

from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table
from shared.store.records import KEEP_EXPIRED, SteeringCapability


class MemorySteeringRepository(MemoryRepository[SteeringCapability]):
    model = SteeringCapability

    def __init__(self) -> None:
        super().__init__(Table("steering"))

    async def record(self, capability: SteeringCapability) -> None:
        doc = self.table.get(capability.id) or {"_id": capability.id}
        doc.update(capability.model_dump(mode="python", exclude={"id"}))
        self.table.replace(doc)
        cutoff = capability.seen - KEEP_EXPIRED
        for old in [d["_id"] for d in self.table.scan() if d["valid_until"] < cutoff]:
            self.table.delete(old)

    async def in_force(self, now: datetime) -> list[SteeringCapability]:
        live = self._find(lambda d: d["valid_until"] >= now)
        if live:
            return live
        return self._find(lambda d: True, sort=lambda d: d["seen"], reverse=True, limit=1)
