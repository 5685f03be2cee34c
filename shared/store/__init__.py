"""MongoDB persistence: one repository per aggregate on PyMongo's AsyncMongoClient.

The database name is the URL's path (``mongodb://host:port/hpo``). Works against any
server that speaks the MongoDB wire protocol (MongoDB itself, SecantusDB in tests and
the embedded default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pymongo import AsyncMongoClient, monitoring

from shared.store.artifacts import ArtifactRepository
from shared.store.curves import CurveRepository
from shared.store.jobs import JobRepository
from shared.store.points import PointRepository, attempt_job_id
from shared.store.segments import SegmentRepository
from shared.store.sites import SiteRepository
from shared.store.stats import StatsRepository
from shared.store.steering import SteeringCapabilityRepository
from shared.store.studies import StudyRepository
from shared.store.tasks import TaskRepository
from shared.store.tokens import TokenRepository


def database_name(url: str) -> str:
    name = urlsplit(url).path.strip("/")
    return name or "hpo"


class Store:
    """The repositories of one database, sharing one client."""

    def __init__(
        self,
        url: str,
        *,
        timeout_ms: int = 10_000,
        listeners: Sequence[monitoring._EventListener] = (),
    ) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=timeout_ms, tz_aware=True, event_listeners=listeners
        )
        db = self.client[database_name(url)]
        self.tasks = TaskRepository(db["tasks"])
        self.segments = SegmentRepository(db["segments"])
        self.points = PointRepository(db["points"])
        self.jobs = JobRepository(db["jobs"])
        self.sites = SiteRepository(db["sites"])
        self.tokens = TokenRepository(db["tokens"])
        self.artifacts = ArtifactRepository(db["artifacts"])
        self.studies = StudyRepository(db["studies"], db["points"])
        self.curves = CurveRepository(db["points"])
        self.stats = StatsRepository(db["tasks"], db["jobs"])
        self.steering = SteeringCapabilityRepository(db["steering"])

    async def start(self) -> None:
        """Check the server answers and create every index (idempotent)."""
        await self.client.admin.command("ping")
        for repo in (
            self.tasks,
            self.segments,
            self.points,
            self.jobs,
            self.sites,
            self.tokens,
            self.artifacts,
            self.studies,
            self.steering,
        ):
            await repo.create_indexes()

    async def ping(self) -> None:
        """One round trip to the server (for ``/readyz``)."""
        await self.client.admin.command("ping")

    async def close(self) -> None:
        await self.client.close()


__all__ = ["Store", "attempt_job_id", "database_name"]
