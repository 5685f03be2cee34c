"""Online studies: the study record beside its task, and the trial writes of ask-and-tell.

A study is a task with no evaluation jobs (docs/architecture.md): its trials are the
task's points, created ``pending`` by an ask (so the job builder, which only builds for
``unevaluated`` points, never sees them) and closed by a tell or a failure. This
repository holds what a task has no room for (the title, the properties as sent, the
pruner) and the conditional point updates of the online path; point documents also get
``ask_id`` and the curve fields of :mod:`shared.store.curves`.
"""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.domain.models import Point
from shared.store.base import Doc, Repository, to_doc
from shared.store.records import Study, Trial
from shared.store.records import trial_from_doc as _trial
from shared.store.transitions import FAIL_TRIAL, HELD, TELL, status_filter

_ASK_INDEX = "task_id_1_ask_id_1"
_ASK_LOOKUP_INDEX = "ask_id_lookup"
"""Unique over online trials only: batch points carry no ``ask_id``."""


class StudyRepository(Repository[Study]):
    model = Study

    def __init__(self, collection: AsyncCollection[Doc], points: AsyncCollection[Doc]) -> None:
        super().__init__(collection)
        self.points = points

    async def create_indexes(self) -> None:
        await self.col.create_index([("owner", ASCENDING), ("key", ASCENDING)], unique=True)
        # Earlier releases declared this index without ``unique``; MongoDB refuses to
        # change an index's options in place, so the old one goes first.
        old = (await self.points.index_information()).get(_ASK_INDEX)
        if old is not None and not old.get("unique"):
            await self.points.drop_index(_ASK_INDEX)
        await self.points.create_index(
            [("task_id", ASCENDING), ("ask_id", ASCENDING)],
            name=_ASK_INDEX,
            unique=True,
            partialFilterExpression={"ask_id": {"$type": "string"}},
        )
        # For the idle check of a study (last_activity).
        await self.points.create_index([("task_id", ASCENDING), ("evaluated", DESCENDING)])
        # For the lookup of every ask: servers that do not plan queries on a partial
        # index (SecantusDB) would otherwise scan every point of the study.
        await self.points.create_index([("ask_id", ASCENDING)], name=_ASK_LOOKUP_INDEX)

    async def insert(self, study: Study) -> bool:
        """False when the study exists already (a concurrent first ask)."""
        try:
            await self.col.insert_one(to_doc(study))
        except DuplicateKeyError:
            return False
        return True

    async def get_for_owner(self, study_id: str, owner: str) -> Study | None:
        found = await self._find({"_id": study_id, "owner": owner}, limit=1)
        return found[0] if found else None

    async def set_idle_timeout(self, study_id: str, seconds: float | None) -> None:
        await self.col.update_one({"_id": study_id}, {"$set": {"idle_timeout": seconds}})

    async def with_idle_timeout(self) -> list[Study]:
        """The studies whose owner set an idle timeout and that are still open."""
        return await self._find({"idle_timeout": {"$type": "number"}, "closed": {"$ne": True}})

    async def mark_closed(self, study_id: str) -> None:
        """Leave the study out of :meth:`with_idle_timeout` from now on."""
        await self.col.update_one({"_id": study_id}, {"$set": {"closed": True}})

    async def last_activity(self, task_id: str) -> datetime | None:
        """When the study's last trial was asked or closed; None before its first ask."""
        asked = await self.points.find_one(
            {"task_id": task_id}, sort=[("segment", DESCENDING), ("index", DESCENDING)]
        )
        closed = await self.points.find_one(
            {"task_id": task_id, "evaluated": {"$type": "date"}}, sort=[("evaluated", DESCENDING)]
        )
        times = [doc[k] for doc, k in ((asked, "created"), (closed, "evaluated")) if doc]
        return max(times) if times else None

    async def insert_trial(self, point: Point, ask_id: str) -> bool:
        """False when the (task, segment, index) is taken, or when another trial holds
        ``ask_id`` already (then :meth:`trial_for_ask` finds it): the unique index makes
        a retried ask unable to create a second trial, even across processes."""
        try:
            await self.points.insert_one({**to_doc(point), "ask_id": ask_id})
        except DuplicateKeyError:
            return False
        return True

    async def trial_for_ask(self, task_id: str, ask_id: str) -> Point | None:
        doc = await self.points.find_one({"ask_id": ask_id, "task_id": task_id})
        return None if doc is None else _trial(doc).point

    async def trials(self, task_id: str) -> list[Trial]:
        cursor = self.points.find({"task_id": task_id}, sort=[("index", ASCENDING)])
        return [_trial(doc) async for doc in cursor]

    async def tell(self, point_id: str, loss: float) -> bool:
        """pending -> evaluated; a second tell of the trial changes nothing."""
        result = await self.points.update_one(
            {"_id": point_id, "status": status_filter(TELL)},
            {"$set": {"status": TELL.target.value, "loss": loss, "evaluated": utcnow()}},
        )
        return result.modified_count == 1

    async def fail(self, point_id: str, error: str) -> bool:
        """pending -> failed (studies exclude failed trials from the sampler)."""
        result = await self.points.update_one(
            {"_id": point_id, "status": status_filter(FAIL_TRIAL)},
            {
                "$set": {
                    "status": FAIL_TRIAL.target.value,
                    "last_error": error[:2000],
                    "evaluated": utcnow(),
                }
            },
        )
        return result.modified_count == 1

    async def report(self, point_id: str, step: int, value: float) -> bool:
        """Record an intermediate value of a pending trial (the same step again keeps
        the first value)."""
        field = f"intermediate.{step}"
        result = await self.points.update_one(
            {"_id": point_id, "status": HELD.value, field: {"$exists": False}},
            {"$set": {field: value}},
        )
        return result.modified_count == 1


__all__ = ["Study", "StudyRepository"]
