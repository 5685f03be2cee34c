"""Artifacts: the registry of objects uploaded for jobs (metrics, logs, metadata)."""

from __future__ import annotations

from pymongo import ASCENDING

from shared.domain.models import Artifact
from shared.store.base import Repository, to_doc


class ArtifactRepository(Repository[Artifact]):
    model = Artifact

    async def create_indexes(self) -> None:
        await self.col.create_index([("task_id", ASCENDING), ("job_id", ASCENDING)])
        await self.col.create_index([("verified", ASCENDING)])

    async def upsert(self, artifact: Artifact) -> None:
        """Idempotent on the id, so a repeated confirmation is harmless."""
        doc = to_doc(artifact)
        await self.col.update_one({"_id": doc.pop("_id")}, {"$setOnInsert": doc}, upsert=True)

    async def set_verified(self, artifact_id: str, ok: bool, detail: str = "") -> None:
        await self.col.update_one(
            {"_id": artifact_id}, {"$set": {"verified": ok, "detail": detail}}
        )

    async def list_for_task(self, task_id: str) -> list[Artifact]:
        return await self._find({"task_id": task_id}, sort=[("created", ASCENDING)])

    async def list_unverified(self, *, limit: int = 100) -> list[Artifact]:
        return await self._find({"verified": None}, limit=limit)
