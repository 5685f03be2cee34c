"""The MongoDB adapter of the store port: one repository per aggregate on PyMongo's
AsyncMongoClient.

The database name is the URL's path (``mongodb://host:port/hpo``). Works against any
server that speaks the MongoDB wire protocol (MongoDB itself, SecantusDB in tests and
the embedded default).

Every write is acknowledged only once it is journaled (``j``) and, on a replica set, on
a majority of members (``w: "majority"``; a standalone server treats it as itself):
the api tells a site "accepted" only after the write, and the site then forgets the
result, so a write acknowledged but held in memory would be a result lost with the
next crash of the database. The write concern is the database's, so no repository
can forget it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pymongo import AsyncMongoClient, WriteConcern, monitoring

from shared.store.artifacts import ArtifactRepository
from shared.store.curves import CurveRepository
from shared.store.datasets import DatasetRepository
from shared.store.jobs import JobRepository
from shared.store.points import PointRepository
from shared.store.runtimes import RuntimeRepository
from shared.store.segments import SegmentRepository
from shared.store.sites import SiteRepository
from shared.store.snapshots import SnapshotRepository
from shared.store.stats import StatsRepository
from shared.store.steering import SteeringCapabilityRepository
from shared.store.studies import StudyRepository
from shared.store.summaries import PointSummaries
from shared.store.tasks import TaskRepository
from shared.store.tokens import TokenRepository
from shared.store.views import ViewRepository

DURABLE = WriteConcern(w="majority", j=True)
"""The write concern of every collection: the write survives a crash of the server."""


def database_name(url: str) -> str:
    name = urlsplit(url).path.strip("/")
    return name or "hpo"


class MongoStore:
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
        db = self.client.get_database(database_name(url), write_concern=DURABLE)
        self.tasks = TaskRepository(db["tasks"])
        self.segments = SegmentRepository(db["segments"])
        self.points = PointRepository(db["points"])
        self.summaries = PointSummaries(db["point_summaries"], self.points)
        self.jobs = JobRepository(db["jobs"], db["tasks"], db["sites"])
        self.sites = SiteRepository(db["sites"])
        self.tokens = TokenRepository(db["tokens"])
        self.artifacts = ArtifactRepository(db["artifacts"])
        self.datasets = DatasetRepository(db["datasets"])
        self.runtimes = RuntimeRepository(db["class_runtimes"])
        self.studies = StudyRepository(db["studies"], db["points"])
        self.curves = CurveRepository(db["points"])
        self.stats = StatsRepository(db["tasks"], db["jobs"])
        self.steering = SteeringCapabilityRepository(db["steering"])
        self.views = ViewRepository(db["monitor_views"])
        self.snapshots = SnapshotRepository(db["monitor_snapshots"])

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
            self.datasets,
            self.runtimes,
            self.studies,
            self.steering,
            self.snapshots,
        ):
            await repo.create_indexes()

    async def ping(self) -> None:
        """One round trip to the server (for ``/readyz``)."""
        await self.client.admin.command("ping")

    async def close(self) -> None:
        await self.client.close()


__all__ = ["DURABLE", "MongoStore", "database_name"]
