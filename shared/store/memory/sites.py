"""Sites in memory (see :mod:`shared.store.sites`)."""

from __future__ import annotations

from datetime import datetime

from shared.domain.models import Site
from shared.store.documents import Doc, from_doc
from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table, add_to_set, pull


class MemorySiteRepository(MemoryRepository[Site]):
    model = Site

    def __init__(self) -> None:
        super().__init__(Table("sites"))

    async def heartbeat(self, site: Site) -> None:
        doc = self.table.get(site.id) or {"_id": site.id}
        doc.update(site.model_dump(mode="python", exclude={"id", "assigned_jobs"}))
        self.table.replace(doc)

    async def repair_assigned(self, site_id: str, add: list[str], drop: list[str]) -> None:
        add_to_set(self.table, site_id, "assigned_jobs", add)
        pull(self.table, site_id, "assigned_jobs", drop)

    async def list_alive(self, since: datetime) -> list[Site]:
        return self._find(lambda d: d["last_heartbeat"] >= since, sort=lambda d: d["_id"])

    async def list_all(self) -> list[Site]:
        return self._find(lambda d: True, sort=lambda d: d["_id"])

    async def list_with_docs(self) -> list[tuple[Site, Doc]]:
        docs = self.table.find(lambda d: True, sort=lambda d: d["_id"])
        return [(from_doc(Site, d), d) for d in docs]
