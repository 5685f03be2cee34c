"""The point counts of a task view, counted from the memory store's points (a count in
memory costs what keeping a summary would)."""

from __future__ import annotations

from collections import Counter

from shared.store.memory.points import MemoryPointRepository


class MemorySummaries:
    def __init__(self, points: MemoryPointRepository) -> None:
        self.points = points

    async def counts(self, task_id: str, segment: str) -> Counter[str]:
        return await self.points.count_by_status(task_id, segment)

    async def by_segment(self, task_id: str, segments: list[str]) -> dict[str, Counter[str]]:
        return {name: await self.counts(task_id, name) for name in segments}
