"""The monitor's stored snapshots in memory (see :mod:`shared.store.snapshots`)."""

from __future__ import annotations

import dataclasses

from shared.store.snapshots import SnapshotPart


class MemorySnapshotRepository:
    def __init__(self) -> None:
        self._parts: dict[tuple[str, str, int], SnapshotPart] = {}
        self.reads = 0
        """Parts handed out with their data (a test's way to see what a load read)."""

    def _of(self, task_id: str) -> list[SnapshotPart]:
        found = [p for (t, _, _), p in self._parts.items() if t == task_id]
        return sorted(found, key=lambda p: (p.segment, p.part))

    async def parts(self, task_id: str) -> list[SnapshotPart]:
        found = self._of(task_id)
        self.reads += len(found)
        return found

    async def heads(self, task_id: str) -> list[SnapshotPart]:
        return [dataclasses.replace(p, data=b"", open=list(p.open)) for p in self._of(task_id)]

    async def part(self, task_id: str, segment: str, part: int) -> SnapshotPart | None:
        found = self._parts.get((task_id, segment, part))
        if found is not None:
            self.reads += 1
        return found

    async def put(self, part: SnapshotPart) -> None:
        self._parts[(part.task_id, part.segment, part.part)] = dataclasses.replace(
            part, open=list(part.open)
        )

    async def drop(self, task_id: str) -> None:
        for key in [k for k in self._parts if k[0] == task_id]:
            del self._parts[key]
