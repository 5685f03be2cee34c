"""Observed run times in memory (see :mod:`shared.store.runtimes`)."""

from __future__ import annotations

from shared.store.documents import Doc
from shared.store.memory.table import Table
from shared.store.records import ClassKey


class MemoryRuntimeRepository:
    def __init__(self) -> None:
        self.table = Table("class_runtimes")

    async def observe(self, task_id: str, site: str, compute_class: str, seconds: float) -> None:
        id_ = f"{task_id}|{site}|{compute_class}"
        doc: Doc = self.table.get(id_) or {"_id": id_, "count": 0, "seconds": 0.0}
        doc.update(task_id=task_id, site=site, compute_class=compute_class)
        doc["count"] += 1
        doc["seconds"] += max(0.0, seconds)
        self.table.replace(doc)

    async def means(self, task_ids: list[str]) -> dict[str, dict[ClassKey, float]]:
        wanted = set(task_ids)
        found: dict[str, dict[ClassKey, float]] = {}
        for doc in self.table.scan():
            if doc["task_id"] in wanted and doc.get("count"):
                key = (str(doc["site"]), str(doc["compute_class"]))
                found.setdefault(str(doc["task_id"]), {})[key] = doc["seconds"] / doc["count"]
        return found
