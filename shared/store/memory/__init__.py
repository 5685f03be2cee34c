"""The memory adapter of the store port: every repository in one process's dictionaries.

Same semantics as the MongoDB adapter (``tests/contract/test_store.py`` holds both to
one suite) and nothing to install or start, so tests and ephemeral runs use it; it
keeps nothing across restarts, which is why the embedded default (``hpo demo``) runs
SecantusDB instead. ``memory://`` opens a fresh store; ``memory://name`` the one store
of that name in this process, so several contexts of one process can share it.
"""

from __future__ import annotations

from typing import ClassVar

from shared.store.memory.artifacts import MemoryArtifactRepository
from shared.store.memory.curves import MemoryCurveRepository
from shared.store.memory.datasets import MemoryDatasetRepository
from shared.store.memory.jobs import MemoryJobRepository
from shared.store.memory.points import MemoryPointRepository, points_table
from shared.store.memory.runtimes import MemoryRuntimeRepository
from shared.store.memory.segments import MemorySegmentRepository
from shared.store.memory.sites import MemorySiteRepository
from shared.store.memory.snapshots import MemorySnapshotRepository
from shared.store.memory.stats import MemoryStatsRepository
from shared.store.memory.steering import MemorySteeringRepository
from shared.store.memory.studies import MemoryStudyRepository
from shared.store.memory.summaries import MemorySummaries
from shared.store.memory.tasks import MemoryTaskRepository
from shared.store.memory.tokens import MemoryTokenRepository
from shared.store.memory.views import MemoryViewRepository


class MemoryStore:
    _named: ClassVar[dict[str, MemoryStore]] = {}

    def __init__(self) -> None:
        points = points_table()
        self.tasks = MemoryTaskRepository()
        self.segments = MemorySegmentRepository()
        self.points = MemoryPointRepository(points)
        self.summaries = MemorySummaries(self.points)
        self.sites = MemorySiteRepository()
        self.jobs = MemoryJobRepository(self.tasks.table, self.sites.table)
        self.tokens = MemoryTokenRepository()
        self.artifacts = MemoryArtifactRepository()
        self.datasets = MemoryDatasetRepository()
        self.runtimes = MemoryRuntimeRepository()
        self.studies = MemoryStudyRepository(points)
        self.curves = MemoryCurveRepository(points)
        self.stats = MemoryStatsRepository(self.tasks.table, self.jobs.table)
        self.steering = MemorySteeringRepository()
        self.views = MemoryViewRepository()
        self.snapshots = MemorySnapshotRepository()

    @classmethod
    def named(cls, url: str) -> MemoryStore:
        """The store ``url`` names in this process (a fresh one for ``memory://``)."""
        name = _name(url)
        if not name:
            return cls()
        return cls._named.setdefault(name, cls())

    @classmethod
    def forget(cls, url: str) -> None:
        """Drop the store ``url`` names (a test's, at its end)."""
        cls._named.pop(_name(url), None)

    async def start(self) -> None:
        """Nothing to connect to or prepare."""

    async def ping(self) -> None:
        """Always answers."""

    async def close(self) -> None:
        """The data stays (a named store is shared by the process's contexts)."""


def _name(url: str) -> str:
    return url.split("://", 1)[1].strip("/") if "://" in url else ""


__all__ = ["MemoryStore"]
