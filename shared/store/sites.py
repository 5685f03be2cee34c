"""Sites: the registry the broker builds from edge heartbeats."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING

from shared.domain.models import Site
from shared.store.base import Doc, Repository, from_doc


class SiteRepository(Repository[Site]):
    model = Site

    async def create_indexes(self) -> None:
        await self.col.create_index([("last_heartbeat", ASCENDING)])

    async def heartbeat(self, site: Site) -> None:
        doc = site.model_dump(mode="python", exclude={"id", "assigned_jobs"})
        await self.col.update_one({"_id": site.id}, {"$set": doc}, upsert=True)

    async def repair_assigned(self, site_id: str, add: list[str], drop: list[str]) -> None:
        """Put the site's assigned jobs right (the broker's periodic pass): ``add`` the
        ids it lacks, ``drop`` those that are not assigned to it."""
        if add:
            await self.col.update_one(
                {"_id": site_id}, {"$addToSet": {"assigned_jobs": {"$each": add}}}
            )
        if drop:
            await self.col.update_one({"_id": site_id}, {"$pull": {"assigned_jobs": {"$in": drop}}})

    async def list_alive(self, since: datetime) -> list[Site]:
        return await self._find({"last_heartbeat": {"$gte": since}}, sort=[("_id", ASCENDING)])

    async def list_all(self) -> list[Site]:
        return await self._find({}, sort=[("_id", ASCENDING)])

    async def list_with_docs(self) -> list[tuple[Site, Doc]]:
        """Every site with its stored document (newer harvesters may report fields
        this release does not model)."""
        cursor = self.col.find({}, sort=[("_id", ASCENDING)])
        return [(from_doc(Site, doc), doc) async for doc in cursor]
