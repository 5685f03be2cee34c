"""Online studies in memory (see :mod:`shared.store.studies`): (owner, key) is unique
among studies, (task, ask) among a task's trials."""

from __future__ import annotations

from datetime import datetime

from shared.clock import utcnow
from shared.domain.models import Point
from shared.store.documents import Doc, from_doc, to_doc
from shared.store.errors import DuplicateKeyError
from shared.store.memory.base import MemoryRepository
from shared.store.memory.points import move
from shared.store.memory.table import Table, Unique, has_field, set_field
from shared.store.records import Study, Trial, trial_from_doc
from shared.store.transitions import FAIL_TRIAL, HELD, TELL


class MemoryStudyRepository(MemoryRepository[Study]):
    model = Study

    def __init__(self, points: Table) -> None:
        super().__init__(Table("studies", (Unique("owner_1_key_1", _owner_key),)))
        self.points = points

    async def insert(self, study: Study) -> bool:
        try:
            self.table.insert(to_doc(study))
        except DuplicateKeyError:
            return False
        return True

    async def get_for_owner(self, study_id: str, owner: str) -> Study | None:
        found = await self.get(study_id)
        return found if found is not None and found.owner == owner else None

    async def set_idle_timeout(self, study_id: str, seconds: float | None) -> None:
        if self.table.get(study_id) is not None:
            self.table.update(study_id, lambda d: d.update(idle_timeout=seconds))

    async def with_idle_timeout(self) -> list[Study]:
        def match(d: Doc) -> bool:
            timeout = d.get("idle_timeout")
            number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
            return number and d.get("closed") is not True

        return self._find(match)

    async def mark_closed(self, study_id: str) -> None:
        if self.table.get(study_id) is not None:
            self.table.update(study_id, lambda d: d.update(closed=True))

    async def last_activity(self, task_id: str) -> datetime | None:
        times: list[datetime] = []
        asked = self.points.find(
            lambda d: d["task_id"] == task_id,
            sort=lambda d: (d["segment"], d["index"]),
            reverse=True,
            limit=1,
        )
        if asked:
            times.append(asked[0]["created"])
        closed = self.points.find(
            lambda d: d["task_id"] == task_id and isinstance(d.get("evaluated"), datetime),
            sort=lambda d: d["evaluated"],
            reverse=True,
            limit=1,
        )
        if closed:
            times.append(closed[0]["evaluated"])
        return max(times) if times else None

    async def insert_trial(self, point: Point, ask_id: str) -> bool:
        try:
            self.points.insert({**to_doc(point), "ask_id": ask_id})
        except DuplicateKeyError:
            return False
        return True

    async def trial_for_ask(self, task_id: str, ask_id: str) -> Point | None:
        found = self.points.find(
            lambda d: d.get("ask_id") == ask_id and d["task_id"] == task_id, limit=1
        )
        return from_doc(Point, found[0]) if found else None

    async def trials(self, task_id: str) -> list[Trial]:
        docs = self.points.find(lambda d: d["task_id"] == task_id, sort=lambda d: d["index"])
        return [trial_from_doc(d) for d in docs]

    async def tell(self, point_id: str, loss: float) -> bool:
        return move(self.points, point_id, TELL, lambda d: d.update(loss=loss, evaluated=utcnow()))

    async def fail(self, point_id: str, error: str) -> bool:
        def change(d: Doc) -> None:
            d.update(last_error=error[:2000], evaluated=utcnow())

        return move(self.points, point_id, FAIL_TRIAL, change)

    async def report(self, point_id: str, step: int, value: float) -> bool:
        path = f"intermediate.{step}"
        doc = self.points.get(point_id)
        if doc is None or doc.get("status") != HELD.value or has_field(doc, path):
            return False
        self.points.update(point_id, lambda d: set_field(d, path, value))
        return True


def _owner_key(doc: Doc) -> tuple[str, str]:
    return (doc["owner"], doc["key"])
