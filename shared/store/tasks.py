"""Tasks: submission, status transitions, best loss."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pymongo.errors
from pymongo import ASCENDING, DESCENDING

from shared.clock import utcnow
from shared.domain.models import ACTIVE_TASK_STATES, TASK_STATES, Task, TaskStatus
from shared.store.base import Repository, from_doc, to_doc
from shared.store.errors import DuplicateKeyError


class TaskRepository(Repository[Task]):
    model = Task

    async def create_indexes(self) -> None:
        await self.col.create_index([("owner", ASCENDING), ("created", DESCENDING)])
        await self.col.create_index([("status", ASCENDING)])

    async def insert(self, task: Task) -> None:
        """Raises :class:`~shared.store.errors.DuplicateKeyError` if the id is taken."""
        try:
            await self.col.insert_one(to_doc(task))
        except pymongo.errors.DuplicateKeyError as exc:
            raise DuplicateKeyError(f"task {task.id} exists") from exc

    async def get_for_owner(self, task_id: str, owner: str) -> Task | None:
        docs = await self._find({"_id": task_id, "owner": owner}, limit=1)
        return docs[0] if docs else None

    async def list_for_owner(
        self, owner: str, *, limit: int = 100, out_ds: str | None = None
    ) -> list[Task]:
        """The owner's tasks, newest first; only those filed under ``out_ds`` if given."""
        query: dict[str, Any] = {"owner": owner}
        if out_ds is not None:
            query["config.outDS"] = {"$in": [out_ds.rstrip("/"), out_ds.rstrip("/") + "/"]}
        return await self._find(query, sort=[("created", DESCENDING)], limit=limit)

    async def list_active(self) -> list[Task]:
        return await self._find({"status": {"$in": [s.value for s in ACTIVE_TASK_STATES]}})

    async def list_all(self, *, limit: int = 200) -> list[Task]:
        return await self._find({}, sort=[("created", DESCENDING)], limit=limit)

    async def transition(self, task_id: str, new: TaskStatus, **fields: Any) -> bool:
        """Move to ``new`` only from a status that may precede it; False if it did not.

        A task that ends must say why: a terminal ``new`` without a non-empty
        ``reason`` raises ValueError (a bug in the caller, never a user's mistake).
        """
        if TASK_STATES.terminal(new) and not str(fields.get("reason", "")).strip():
            raise ValueError(f"task {task_id}: a move to {new.value} needs a reason")
        sources = [s.value for s in TASK_STATES.sources(new)]
        result = await self.col.update_one(
            {"_id": task_id, "status": {"$in": sources}},
            {"$set": {"status": new.value, "updated": utcnow(), **fields}, "$inc": {"version": 1}},
        )
        return result.modified_count == 1

    async def close(self, task_id: str, reason: str) -> bool:
        """End an active task that has no job to wait for (an online study) as ``done``,
        through ``finishing``; False when it had ended already."""
        await self.transition(task_id, TaskStatus.FINISHING)
        return await self.transition(task_id, TaskStatus.DONE, reason=reason)

    async def set_waiting(self, task_id: str, waiting: str) -> bool:
        """Record why the task's jobs wait ("" when nothing holds them); True if it
        changed. Only an active task is touched, and an unchanged text is not rewritten."""
        result = await self.col.update_one(
            {
                "_id": task_id,
                "status": {"$in": [s.value for s in ACTIVE_TASK_STATES]},
                "waiting": {"$ne": waiting},
            },
            {"$set": {"waiting": waiting}},
        )
        return result.modified_count == 1

    async def set_link(self, task_id: str, name: str, url: str) -> None:
        """Where the task can also be seen (``mlflow``: its experiment on the central
        MLflow server); shown in the task's view."""
        await self.col.update_one({"_id": task_id}, {"$set": {f"links.{name}": url}})

    async def claim_build(
        self,
        task_id: str,
        holder: str,
        now: datetime,
        until: datetime,
        *,
        closing: list[str] | None = None,
    ) -> Task | None:
        """Take the task's build lock for ``holder`` until ``until`` and return the task
        as it is now; None while another holder's lock runs (or there is no such task).
        ``closing``: ids of jobs just applied, dropped from its open jobs in the same
        write when the lock is taken (the caller drops them itself when it is not).

        Job builders define a task's jobs one at a time: two defining at once would each
        count the same free slots and together exceed the task's parallelism."""
        doc = await self._update_then_read(
            {
                "_id": task_id,
                "$or": [
                    {"builder": None},
                    {"builder": holder},
                    {"builder_until": {"$lt": now}},
                ],
            },
            {
                "$set": {"builder": holder, "builder_until": until},
                **({"$pull": {"open_jobs": {"$in": closing}}} if closing else {}),
            },
        )
        return None if doc is None else from_doc(Task, doc)

    async def release_build(self, task_id: str, holder: str) -> None:
        await self.col.update_one({"_id": task_id, "builder": holder}, {"$set": {"builder": None}})

    async def add_jobs(self, task_id: str, delta: int) -> None:
        """Count jobs defined (``delta`` > 0) or preempted (< 0) against the budget."""
        await self.col.update_one({"_id": task_id}, {"$inc": {"jobs_counted": delta}})

    async def set_jobs(self, task_id: str, counted: int) -> None:
        """Put the job count right (the job builder's periodic recount)."""
        await self.col.update_one(
            {"_id": task_id, "jobs_counted": {"$ne": counted}}, {"$set": {"jobs_counted": counted}}
        )

    async def repair_open_jobs(self, task_id: str, add: list[str], drop: list[str]) -> None:
        """Put the task's open jobs right (the job builder's periodic pass): ``add`` the
        ids it lacks, ``drop`` those of jobs applied or gone."""
        if add:
            await self.col.update_one(
                {"_id": task_id}, {"$addToSet": {"open_jobs": {"$each": add}}}
            )
        if drop:
            await self.col.update_one({"_id": task_id}, {"$pull": {"open_jobs": {"$in": drop}}})

    async def offer_best(self, task_id: str, loss: float, point_id: str) -> bool:
        """Record ``loss`` as the best if it beats the current best (atomic)."""
        result = await self.col.update_one(
            {"_id": task_id, "$or": [{"best_loss": None}, {"best_loss": {"$gt": loss}}]},
            {"$set": {"best_loss": loss, "best_point_id": point_id}},
        )
        return result.modified_count == 1
