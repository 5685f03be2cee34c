"""Whole-table counts in memory (see :mod:`shared.store.stats`)."""

from __future__ import annotations

from collections import Counter

from shared.store.memory.table import Table


class MemoryStatsRepository:
    def __init__(self, tasks: Table, jobs: Table) -> None:
        self.tasks = tasks
        self.jobs = jobs

    async def tasks_by_status(self) -> dict[str, int]:
        return dict(Counter(str(d["status"]) for d in self.tasks.scan()))

    async def task_owners(self) -> set[str]:
        return {str(d["owner"]) for d in self.tasks.scan()}

    async def jobs_by_status(self, statuses: list[str]) -> dict[str, int]:
        counts = Counter(str(d["status"]) for d in self.jobs.scan() if d["status"] in statuses)
        return {s: counts.get(s, 0) for s in statuses}
