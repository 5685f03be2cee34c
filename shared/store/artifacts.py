"""Artifacts: the registry of objects uploaded for jobs (metrics, logs, metadata)."""

from __future__ import annotations

from typing import Any

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

    async def list_for_jobs(self, task_id: str, job_ids: list[str]) -> list[Artifact]:
        return await self._find({"task_id": task_id, "job_id": {"$in": job_ids}})

    async def list_for_point(self, task_id: str, point_id: str) -> list[Artifact]:
        """Those of every attempt of the point (job ids start with the point's id)."""
        return await self._find(
            {"task_id": task_id, "job_id": {"$gte": f"{point_id}.a", "$lt": f"{point_id}.b"}},
            sort=[("job_id", ASCENDING), ("created", ASCENDING)],
        )

    async def page(
        self, task_id: str, *, after: str | None, kind: str | None, limit: int
    ) -> list[Artifact]:
        """A task's artifacts in id order from after ``after`` (the (task, job) index)."""
        query: dict[str, Any] = {"task_id": task_id}
        if after:
            query["_id"] = {"$gt": after}
        if kind:
            query["kind"] = kind
        return await self._find(query, sort=[("_id", ASCENDING)], limit=limit)

    async def list_unverified(self, *, limit: int = 100) -> list[Artifact]:
        return await self._find({"verified": None}, limit=limit)
