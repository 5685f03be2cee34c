"""The point counts and Pareto fronts of a task view, computed from the memory store's
points (in memory that costs what keeping a summary would)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from shared.domain.models import PointStatus
from shared.domain.pareto import Direction, FrontMember, fold
from shared.store.memory.points import MemoryPointRepository


class MemorySummaries:
    def __init__(self, points: MemoryPointRepository) -> None:
        self.points = points

    async def counts(
        self, task_id: str, segment: str, directions: Sequence[Direction] = ()
    ) -> Counter[str]:
        return await self.points.count_by_status(task_id, segment)

    async def by_segment(
        self, task_id: str, segments: list[str], directions: Sequence[Direction] = ()
    ) -> dict[str, Counter[str]]:
        return {name: await self.counts(task_id, name) for name in segments}

    async def front(
        self, task_id: str, segment: str, directions: Sequence[Direction]
    ) -> list[FrontMember]:
        pairs: list[tuple[tuple[str, dict[str, object]], list[float]]] = []
        for point in await self.points.list_for_segment(task_id, segment):
            if point.status is PointStatus.EVALUATED and isinstance(point.loss, list):
                pairs = fold(pairs, (point.id, point.params), point.loss, directions)
        return [(pid, loss, params) for (pid, params), loss in pairs]
