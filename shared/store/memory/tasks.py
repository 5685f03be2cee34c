"""Tasks in memory (see :mod:`shared.store.tasks` for the MongoDB twin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.clock import utcnow
from shared.domain.models import ACTIVE_TASK_STATES, TASK_STATES, Task, TaskStatus
from shared.store.documents import Doc, to_doc
from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table, add_to_set, pull, set_field

ACTIVE = {s.value for s in ACTIVE_TASK_STATES}


class MemoryTaskRepository(MemoryRepository[Task]):
    model = Task

    def __init__(self) -> None:
        super().__init__(Table("tasks"))

    async def insert(self, task: Task) -> None:
        self.table.insert(to_doc(task))

    async def get_for_owner(self, task_id: str, owner: str) -> Task | None:
        found = await self.get(task_id)
        return found if found is not None and found.owner == owner else None

    async def list_for_owner(
        self, owner: str, *, limit: int = 100, out_ds: str | None = None
    ) -> list[Task]:
        wanted = None if out_ds is None else {out_ds.rstrip("/"), out_ds.rstrip("/") + "/"}

        def match(d: Doc) -> bool:
            if d["owner"] != owner:
                return False
            return wanted is None or (d.get("config") or {}).get("outDS") in wanted

        return self._find(match, sort=lambda d: d["created"], reverse=True, limit=limit)

    async def list_active(self) -> list[Task]:
        return self._find(lambda d: d["status"] in ACTIVE)

    async def list_all(self, *, limit: int = 200) -> list[Task]:
        return self._find(lambda d: True, sort=lambda d: d["created"], reverse=True, limit=limit)

    async def transition(self, task_id: str, new: TaskStatus, **fields: Any) -> bool:
        if TASK_STATES.terminal(new) and not str(fields.get("reason", "")).strip():
            raise ValueError(f"task {task_id}: a move to {new.value} needs a reason")
        sources = {s.value for s in TASK_STATES.sources(new)}
        doc = self.table.get(task_id)
        if doc is None or doc["status"] not in sources:
            return False

        def change(d: Doc) -> None:
            for name, value in {"status": new.value, "updated": utcnow(), **fields}.items():
                set_field(d, name, value)
            d["version"] = int(d.get("version") or 0) + 1

        self.table.update(task_id, change)
        return True

    async def close(self, task_id: str, reason: str) -> bool:
        await self.transition(task_id, TaskStatus.FINISHING)
        return await self.transition(task_id, TaskStatus.DONE, reason=reason)

    async def set_waiting(self, task_id: str, waiting: str) -> bool:
        doc = self.table.get(task_id)
        if doc is None or doc["status"] not in ACTIVE or doc.get("waiting") == waiting:
            return False
        self.table.update(task_id, lambda d: d.update(waiting=waiting))
        return True

    async def set_link(self, task_id: str, name: str, url: str) -> None:
        if self.table.get(task_id) is not None:
            self.table.update(task_id, lambda d: set_field(d, f"links.{name}", url))

    async def claim_build(
        self,
        task_id: str,
        holder: str,
        now: datetime,
        until: datetime,
        *,
        closing: list[str] | None = None,
    ) -> Task | None:
        doc = self.table.get(task_id)
        if doc is None:
            return None
        held_by, held_until = doc.get("builder"), doc.get("builder_until")
        expired = isinstance(held_until, datetime) and held_until < now
        if held_by is not None and held_by != holder and not expired:
            return None
        self.table.update(task_id, lambda d: d.update(builder=holder, builder_until=until))
        if closing:
            pull(self.table, task_id, "open_jobs", closing)
        return await self.get(task_id)

    async def release_build(self, task_id: str, holder: str) -> None:
        doc = self.table.get(task_id)
        if doc is not None and doc.get("builder") == holder:
            self.table.update(task_id, lambda d: d.update(builder=None))

    async def add_jobs(self, task_id: str, delta: int) -> None:
        if self.table.get(task_id) is not None:

            def add(d: Doc) -> None:
                d["jobs_counted"] = int(d.get("jobs_counted") or 0) + delta

            self.table.update(task_id, add)

    async def set_jobs(self, task_id: str, counted: int) -> None:
        doc = self.table.get(task_id)
        if doc is not None and doc.get("jobs_counted") != counted:
            self.table.update(task_id, lambda d: d.update(jobs_counted=counted))

    async def repair_open_jobs(self, task_id: str, add: list[str], drop: list[str]) -> None:
        add_to_set(self.table, task_id, "open_jobs", add)
        pull(self.table, task_id, "open_jobs", drop)

    async def offer_best(self, task_id: str, loss: float, point_id: str) -> bool:
        doc = self.table.get(task_id)
        if doc is None:
            return False
        best = doc.get("best_loss")
        if best is not None and not best > loss:
            return False
        self.table.update(task_id, lambda d: d.update(best_loss=loss, best_point_id=point_id))
        return True
