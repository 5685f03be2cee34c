"""The artifact registry in memory (see :mod:`shared.store.artifacts`)."""

from __future__ import annotations

from shared.domain.models import Artifact
from shared.store.documents import Doc, to_doc
from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table


class MemoryArtifactRepository(MemoryRepository[Artifact]):
    model = Artifact

    def __init__(self) -> None:
        super().__init__(Table("artifacts"))

    async def upsert(self, artifact: Artifact) -> None:
        if self.table.get(artifact.id) is None:
            self.table.insert(to_doc(artifact))

    async def set_verified(self, artifact_id: str, ok: bool, detail: str = "") -> None:
        if self.table.get(artifact_id) is not None:
            self.table.update(artifact_id, lambda d: d.update(verified=ok, detail=detail))

    async def list_for_task(self, task_id: str) -> list[Artifact]:
        return self._find(lambda d: d["task_id"] == task_id, sort=lambda d: d["created"])

    async def list_for_jobs(self, task_id: str, job_ids: list[str]) -> list[Artifact]:
        wanted = set(job_ids)
        return self._find(lambda d: d["task_id"] == task_id and d["job_id"] in wanted)

    async def list_for_point(self, task_id: str, point_id: str) -> list[Artifact]:
        lo, hi = f"{point_id}.a", f"{point_id}.b"
        return self._find(
            lambda d: d["task_id"] == task_id and lo <= d["job_id"] < hi,
            sort=lambda d: (d["job_id"], d["created"]),
        )

    async def page(
        self, task_id: str, *, after: str | None, kind: str | None, limit: int
    ) -> list[Artifact]:
        def match(d: Doc) -> bool:
            if d["task_id"] != task_id or (after and not d["_id"] > after):
                return False
            return not kind or d["kind"] == kind

        return self._find(match, sort=lambda d: d["_id"], limit=limit)

    async def list_unverified(self, *, limit: int = 100) -> list[Artifact]:
        return self._find(lambda d: d.get("verified") is None, limit=limit)
