"""Datasets in memory (see :mod:`shared.store.datasets`)."""

from __future__ import annotations

from shared.clock import utcnow
from shared.domain.datasets import PART_SIZE, Dataset, DatasetFile, dataset_id
from shared.store.documents import to_doc
from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table


class MemoryDatasetRepository(MemoryRepository[Dataset]):
    model = Dataset

    def __init__(self) -> None:
        super().__init__(Table("datasets"))

    async def get_for_owner(self, owner: str, name: str) -> Dataset | None:
        return await self.get(dataset_id(owner, name))

    async def list_for_owner(self, owner: str) -> list[Dataset]:
        return self._find(lambda d: d["owner"] == owner, sort=lambda d: d["name"])

    async def declare(
        self, owner: str, name: str, files: list[DatasetFile], *, part_size: int = PART_SIZE
    ) -> Dataset | None:
        found = await self.get_for_owner(owner, name)
        if found is not None and found.status == "ready":
            return found if found.same_files(files) else None
        if found is not None and found.same_files(files):
            return found
        dataset = Dataset(
            id=dataset_id(owner, name), owner=owner, name=name, files=files, part_size=part_size
        )
        self.table.replace(to_doc(dataset))
        return dataset

    async def mark_ready(self, owner: str, name: str) -> bool:
        id_ = dataset_id(owner, name)
        doc = self.table.get(id_)
        if doc is None or doc.get("status") != "uploading":
            return False
        self.table.update(id_, lambda d: d.update(status="ready", updated=utcnow()))
        return True

    async def delete(self, owner: str, name: str) -> bool:
        return self.table.delete(dataset_id(owner, name))
