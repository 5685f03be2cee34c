"""The monitor's stored snapshots: a task's points in compact columns, part by part.

A segment's points are cut into parts of consecutive indices (``part`` n holds the
indices from ``n * size``); each part is one document holding its rows encoded by the
monitor (:mod:`services.monitor.columns`), the first index it does not hold yet
(``upto``) and the indices of its points that were still open when it was written.
Like a stored view it is a cache derived from the points, never a record: any version
of a part is a true state of those points at some moment, so a reader takes what is
stored and reads, from the points, only what comes after ``upto`` and the open ones.
Losing the collection costs one full read of a task's points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bson import Binary
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from shared.store.documents import Doc


@dataclass(frozen=True)
class SnapshotPart:
    task_id: str
    segment: str
    part: int
    upto: int
    """The first index, counted from the task's index 0, this part does not hold."""
    open: list[int] = field(default_factory=list)
    """The indices it holds whose points could still change."""
    data: bytes = b""


HEAD_FIELDS = {"task_id": 1, "segment": 1, "part": 1, "upto": 1, "open": 1}


def _key(task_id: str, segment: str, part: int) -> str:
    return f"{task_id}/{segment}/{part}"


def _part(doc: Doc) -> SnapshotPart:
    return SnapshotPart(
        task_id=str(doc["task_id"]),
        segment=str(doc["segment"]),
        part=int(doc["part"]),
        upto=int(doc["upto"]),
        open=[int(i) for i in doc.get("open") or []],
        data=bytes(doc.get("data") or b""),
    )


class SnapshotRepository:
    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.col = collection

    async def create_indexes(self) -> None:
        await self.col.create_index(
            [("task_id", ASCENDING), ("segment", ASCENDING), ("part", ASCENDING)]
        )

    async def parts(self, task_id: str) -> list[SnapshotPart]:
        """Every part of the task, data included, in one read (by segment and part)."""
        docs = await self.col.find({"task_id": task_id}).to_list()
        return sorted((_part(d) for d in docs), key=lambda p: (p.segment, p.part))

    async def heads(self, task_id: str) -> list[SnapshotPart]:
        """Every part of the task without its data (what it covers, what is open)."""
        docs = await self.col.find({"task_id": task_id}, HEAD_FIELDS).to_list()
        return sorted((_part(d) for d in docs), key=lambda p: (p.segment, p.part))

    async def part(self, task_id: str, segment: str, part: int) -> SnapshotPart | None:
        doc = await self.col.find_one({"_id": _key(task_id, segment, part)})
        return None if doc is None else _part(doc)

    async def put(self, part: SnapshotPart) -> None:
        """Replace the part (last writer wins: every version is a true state)."""
        key = _key(part.task_id, part.segment, part.part)
        await self.col.replace_one(
            {"_id": key},
            {
                "_id": key,
                "task_id": part.task_id,
                "segment": part.segment,
                "part": part.part,
                "upto": part.upto,
                "open": list(part.open),
                "data": Binary(part.data),
            },
            upsert=True,
        )

    async def drop(self, task_id: str) -> None:
        await self.col.delete_many({"task_id": task_id})
