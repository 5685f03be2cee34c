"""Datasets: each owner's named training files (``shared/domain/datasets.py``)."""

from __future__ import annotations

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.domain.datasets import PART_SIZE, Dataset, DatasetFile, dataset_id
from shared.store.base import Repository, to_doc


class DatasetRepository(Repository[Dataset]):
    model = Dataset

    async def create_indexes(self) -> None:
        await self.col.create_index([("owner", ASCENDING), ("name", ASCENDING)])

    async def get_for_owner(self, owner: str, name: str) -> Dataset | None:
        return await self.get(dataset_id(owner, name))

    async def list_for_owner(self, owner: str) -> list[Dataset]:
        return await self._find({"owner": owner}, sort=[("name", ASCENDING)])

    async def declare(
        self, owner: str, name: str, files: list[DatasetFile], *, part_size: int = PART_SIZE
    ) -> Dataset | None:
        """Create the dataset as ``uploading`` with ``files``, or replace the files of one
        still uploading. None when a ``ready`` dataset of that name holds other files
        (it must be removed first); a ready one with the same files is returned as is."""
        found = await self.get_for_owner(owner, name)
        if found is not None and found.status == "ready":
            return found if found.same_files(files) else None
        if found is not None and found.same_files(files):
            return found
        dataset = Dataset(
            id=dataset_id(owner, name), owner=owner, name=name, files=files, part_size=part_size
        )
        doc = to_doc(dataset)
        try:  # made ready meanwhile: the upsert collides with it
            await self.col.update_one(
                {"_id": doc.pop("_id"), "status": {"$ne": "ready"}}, {"$set": doc}, upsert=True
            )
        except DuplicateKeyError:
            return None
        return dataset

    async def mark_ready(self, owner: str, name: str) -> bool:
        result = await self.col.update_one(
            {"_id": dataset_id(owner, name), "status": "uploading"},
            {"$set": {"status": "ready", "updated": utcnow()}},
        )
        return result.modified_count == 1

    async def delete(self, owner: str, name: str) -> bool:
        result = await self.col.delete_one({"_id": dataset_id(owner, name)})
        return result.deleted_count == 1
