"""Jobs: one evaluation attempt of a point, from definition to a terminal status.

Every edge-facing change is conditional on the lease ``generation`` so that a report
from an expired lease is recognised and ignored. Each status change also stamps the
time the job entered that status (``stamps.<status>``; ``running`` keeps the first
start), from which the job's stage latencies are measured when it ends.

Two counters live beside the jobs, as sets of job ids so that writing one twice moves
it once: the task's ``open_jobs`` (defined and not yet applied) and the site's
``assigned_jobs`` (assigned and not yet leased). They are other documents than the job,
so one write cannot hold both: the id is added just before the job's write and dropped
just after it. A process killed in between leaves an id too many (never one too few,
so a task never exceeds its parallelism nor a site its free slots), which the owning
service's periodic pass drops (the job builder for tasks, the broker for sites).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.domain.models import (
    ACTIVE_JOB_STATES,
    JOB_STATES,
    TERMINAL_JOB_STATES,
    Job,
    JobStatus,
    PointOutcome,
)
from shared.domain.paging import PageRequest
from shared.store.base import Doc, Repository, from_doc, to_doc

_LIVE = [JobStatus.LEASED.value, JobStatus.RUNNING.value]


class JobRepository(Repository[Job]):
    model = Job

    def __init__(
        self,
        collection: AsyncCollection[Doc],
        tasks: AsyncCollection[Doc],
        sites: AsyncCollection[Doc],
    ) -> None:
        super().__init__(collection)
        self.tasks = tasks
        self.sites = sites

    async def create_indexes(self) -> None:
        await self.col.create_index([("task_id", ASCENDING), ("status", ASCENDING)])
        await self.col.create_index(
            [("status", ASCENDING), ("site", ASCENDING), ("created", ASCENDING)]
        )
        await self.col.create_index([("status", ASCENDING), ("applied", ASCENDING)])
        await self.col.create_index([("task_id", ASCENDING), ("applied", ASCENDING)])
        await self.col.create_index(
            [("task_id", ASCENDING), ("created", ASCENDING), ("_id", ASCENDING)]
        )

    async def get_many(self, job_ids: list[str]) -> list[Job]:
        """The jobs of these ids that exist, in one ``$in`` read on the id."""
        if not job_ids:
            return []
        return await self._find({"_id": {"$in": job_ids}})

    async def insert(self, job: Job, *, counted: bool = False) -> bool:
        """Insert the job and count it open on its task (and, if ``counted``, against
        its budget, ``Task.jobs_counted``, in the same write); False if it was there
        already: it is then left open only if it still is, and not counted again."""
        task_update: dict[str, Any] = {"$addToSet": {"open_jobs": job.id}}
        if counted:
            task_update["$inc"] = {"jobs_counted": 1}
        await self.tasks.update_one({"_id": job.task_id}, task_update)
        try:
            await self.col.insert_one(to_doc(job))
        except DuplicateKeyError:
            there = await self.col.find_one({"_id": job.id}, projection={"applied": 1})
            undo: dict[str, Any] = {}
            if there is None or there.get("applied"):
                undo["$pull"] = {"open_jobs": job.id}
            if counted:
                undo["$inc"] = {"jobs_counted": -1}
            if undo:
                await self.tasks.update_one({"_id": job.task_id}, undo)
            return False
        return True

    async def insert_many(self, jobs: list[Job]) -> None:
        """In order, in one request; raises :class:`~shared.store.errors.DuplicateKeyError`
        at the first job whose id is taken (those before it are stored). For writing a
        history at once (a benchmark's pre-seeded task): it keeps none of the task's or
        site's job sets (``open_jobs``, ``assigned_jobs``) nor the job count, so it is for
        jobs already applied; the job builder inserts each job as it defines it."""
        await self._insert_many(jobs, "job")

    async def _close_on_task(self, task_id: str, job_id: str) -> None:
        await self.tasks.update_one({"_id": task_id}, {"$pull": {"open_jobs": job_id}})

    async def _unassigned_from(self, site: str, job_ids: list[str]) -> None:
        await self.sites.update_one({"_id": site}, {"$pull": {"assigned_jobs": {"$in": job_ids}}})

    async def open_ids(self, task_id: str) -> list[str]:
        """The ids of the task's jobs not yet applied (what ``Task.open_jobs`` holds)."""
        cursor = self.col.find({"task_id": task_id, "applied": False}, projection={"_id": 1})
        return [str(doc["_id"]) async for doc in cursor]

    async def assigned_ids(self, site: str) -> list[str]:
        """The ids of the jobs assigned to ``site`` (what ``Site.assigned_jobs`` holds)."""
        cursor = self.col.find(
            {"status": JobStatus.ASSIGNED.value, "site": site}, projection={"_id": 1}
        )
        return [str(doc["_id"]) async for doc in cursor]

    async def count(self, task_id: str, *, active_only: bool) -> int:
        """Active jobs, or every job that counts against maxEvaluationJobs: a job
        preempted with a checkpoint is continued by the next one, so only that counts."""
        query: dict[str, Any] = {"task_id": task_id}
        if active_only:
            query["status"] = {"$in": [s.value for s in ACTIVE_JOB_STATES]}
        else:
            query["status"] = {"$ne": JobStatus.PREEMPTED.value}
        return await self.col.count_documents(query)

    async def list_for_task(self, task_id: str, *, limit: int = 0) -> list[Job]:
        return await self._find({"task_id": task_id}, sort=[("created", ASCENDING)], limit=limit)

    async def page_for_task(
        self,
        task_id: str,
        page: PageRequest,
        *,
        status: JobStatus | None = None,
        site: str | None = None,
    ) -> list[Job]:
        """One page of the task's jobs, oldest first (see :mod:`shared.domain.paging`)."""
        query: dict[str, Any] = {"task_id": task_id}
        if status is not None:
            query["status"] = status.value
        if site is not None:
            query["site"] = site
        return await self._page(query, "created", page)

    async def list_by_status(self, status: JobStatus, *, limit: int = 100) -> list[Job]:
        return await self._find(
            {"status": status.value}, sort=[("created", ASCENDING)], limit=limit
        )

    async def _move(self, query: dict[str, Any], new: JobStatus, **fields: Any) -> bool:
        sources = [s.value for s in JOB_STATES.sources(new)]
        status_filter = query.pop("status", {"$in": sources})
        now = utcnow()
        result = await self.col.update_one(
            {**query, "status": status_filter},
            {"$set": {"status": new.value, "updated": now, f"stamps.{new.value}": now, **fields}},
        )
        return result.modified_count == 1

    async def assign(self, job_id: str, site: str, compute_class: str | None = None) -> bool:
        await self.sites.update_one({"_id": site}, {"$addToSet": {"assigned_jobs": job_id}})
        if await self._move(
            {"_id": job_id, "status": JobStatus.DEFINED.value},
            JobStatus.ASSIGNED,
            site=site,
            compute_class=compute_class,
        ):
            return True
        there = await self.col.find_one({"_id": job_id}, projection={"status": 1, "site": 1})
        if (
            there is None
            or there.get("status") != JobStatus.ASSIGNED.value
            or there.get("site") != site
        ):
            await self._unassigned_from(site, [job_id])
        return False

    async def unassign(self, job_id: str) -> bool:
        now = utcnow()
        before = await self.col.find_one({"_id": job_id}, projection={"status": 1, "site": 1})
        if before is None or before.get("status") != JobStatus.ASSIGNED.value:
            return False
        site = before.get("site")
        result = await self.col.update_one(  # the site too: one read and one update
            {"_id": job_id, "status": JobStatus.ASSIGNED.value, "site": site},
            {
                "$set": {
                    "status": JobStatus.DEFINED.value,
                    "updated": now,
                    "stamps.defined": now,
                    "site": None,
                    "compute_class": None,
                }
            },
        )
        if result.modified_count != 1:
            return False
        if site:
            await self._unassigned_from(str(site), [job_id])
        return True

    async def lease_next(self, site: str, holder: str, expires: datetime) -> Job | None:
        """Take the job assigned to ``site`` longest ago under a new lease generation.

        The candidates are the site's kept ``assigned_jobs`` (written before each
        assignment, so never short of one but for a repair racing a move, which the
        broker's next pass puts right), each tried by its id: a query on the jobs'
        status and site would cost what the site's finished jobs cost on a server that
        does not plan it on its index, and a long poll that finds nothing asks often."""
        record = await self.sites.find_one({"_id": site}, projection={"assigned_jobs": 1})
        now = utcnow()
        taken: dict[str, Any] = {
            "$set": {
                "status": JobStatus.LEASED.value,
                "lease": {"holder": holder, "expires": expires},
                "updated": now,
                "stamps.leased": now,
            },
            "$inc": {"generation": 1},
        }
        wanted = {"status": JobStatus.ASSIGNED.value, "site": site}
        if record is None:  # a site never registered keeps no set: by the jobs
            doc = await self.col.find_one_and_update(
                wanted, taken, sort=[("created", ASCENDING)], return_document=ReturnDocument.AFTER
            )
            return from_doc(Job, doc) if doc is not None else None
        for job_id in [str(i) for i in record.get("assigned_jobs") or []]:
            doc = await self._update_then_read({"_id": job_id, **wanted}, taken)
            if doc is not None:
                await self._unassigned_from(site, [job_id])
                return from_doc(Job, doc)
        return None

    async def extend_lease(
        self, job_id: str, generation: int, expires: datetime, *, running: bool, host: str = ""
    ) -> bool:
        now = utcnow()
        fields: dict[str, Any] = {"lease.expires": expires, "updated": now}
        update: dict[str, Any] = {"$set": fields}
        if running:
            fields["status"] = JobStatus.RUNNING.value
            update["$min"] = {"stamps.running": now}  # the first start counts
            if host:
                fields["host"] = host
        result = await self.col.update_one(
            {"_id": job_id, "generation": generation, "status": {"$in": _LIVE}}, update
        )
        return result.modified_count == 1

    async def finish(self, job_id: str, generation: int, results: list[PointOutcome]) -> bool:
        return await self._move(
            {"_id": job_id, "generation": generation, "status": {"$in": _LIVE}},
            JobStatus.FINISHED,
            results=[r.model_dump() for r in results],
        )

    async def fail(self, job_id: str, generation: int, reason: str) -> bool:
        return await self._move(
            {"_id": job_id, "generation": generation, "status": {"$in": _LIVE}},
            JobStatus.FAILED,
            reason=reason,
        )

    async def preempt(self, job_id: str, generation: int, reason: str) -> bool:
        return await self._move(
            {"_id": job_id, "generation": generation, "status": {"$in": _LIVE}},
            JobStatus.PREEMPTED,
            reason=reason,
        )

    async def live_at_site(self, site: str) -> list[Job]:
        """Jobs a site holds a lease on (leased or running), oldest first."""
        return await self._find(
            {"site": site, "status": {"$in": _LIVE}}, sort=[("created", ASCENDING)]
        )

    async def expired_leases(self, now: datetime, *, limit: int = 100) -> list[Job]:
        return await self._find(
            {"status": {"$in": _LIVE}, "lease.expires": {"$lt": now}}, limit=limit
        )

    async def mark_lost(self, job_id: str, generation: int, reason: str) -> bool:
        return await self._move(
            {"_id": job_id, "generation": generation, "status": {"$in": _LIVE}},
            JobStatus.LOST,
            reason=reason,
        )

    async def cancel_task_jobs(self, task_id: str, reason: str) -> int:
        now = utcnow()
        waiting: dict[str, list[str]] = {}
        cursor = self.col.find(
            {"task_id": task_id, "status": JobStatus.ASSIGNED.value}, projection={"site": 1}
        )
        async for doc in cursor:
            if doc.get("site"):
                waiting.setdefault(str(doc["site"]), []).append(str(doc["_id"]))
        result = await self.col.update_many(
            {"task_id": task_id, "status": {"$in": [s.value for s in ACTIVE_JOB_STATES]}},
            {
                "$set": {
                    "status": JobStatus.CANCELLED.value,
                    "reason": reason,
                    "updated": now,
                    "stamps.cancelled": now,
                }
            },
        )
        for site, job_ids in waiting.items():  # a job leased meanwhile was dropped already
            await self._unassigned_from(site, job_ids)
        return result.modified_count

    async def unapplied(self, *, limit: int = 200) -> list[Job]:
        """Terminal jobs whose outcome has not yet been applied to their points."""
        return await self._find(
            {"status": {"$in": [s.value for s in TERMINAL_JOB_STATES]}, "applied": False},
            sort=[("updated", ASCENDING)],
            limit=limit,
        )

    async def count_unapplied(self, task_id: str) -> int:
        """The task's jobs whose outcome is not yet on their points: the active ones and
        the terminal ones not yet applied. At 0 the points' counts are final."""
        return await self.col.count_documents({"task_id": task_id, "applied": False})

    async def mark_applied(self, job_id: str, *, close: bool = True) -> bool:
        """True for the one call that marked it (a concurrent second apply gets False);
        that call also closes the job on its task, unless ``close`` is False: the
        caller then closes it itself (with its next write to the task, for one less)."""
        doc = await self._update_then_read(
            {"_id": job_id, "applied": False},
            {"$set": {"applied": True}},
            projection={"task_id": 1},
        )
        if doc is None:
            return False
        if close:
            await self._close_on_task(str(doc["task_id"]), job_id)
        return True

    async def list_for_point(self, point_id: str) -> list[Job]:
        """Every attempt of a point, in id order: job ids start with the point's id
        (``<point>.a<n>``), so this is one range on the primary key."""
        return await self._find(
            {"_id": {"$gte": f"{point_id}.a", "$lt": f"{point_id}.b"}}, sort=[("_id", ASCENDING)]
        )

    async def list_in_states(
        self, task_id: str, states: list[JobStatus], *, limit: int
    ) -> list[Job]:
        """A task's jobs in ``states``, newest change first (the (task, status) index)."""
        return await self._find(
            {"task_id": task_id, "status": {"$in": [s.value for s in states]}},
            sort=[("updated", DESCENDING)],
            limit=limit,
        )

    async def count_by_status(self, task_id: str) -> dict[str, int]:
        cursor = await self.col.aggregate(
            [{"$match": {"task_id": task_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        )
        return {str(doc["_id"]): int(doc["n"]) async for doc in cursor}

    async def live_by_site(self, owner: str | None = None) -> dict[str, int]:
        """Jobs leased or running per site (all owners', or one owner's)."""
        match: dict[str, Any] = {"status": {"$in": _LIVE}}
        if owner is not None:
            match["owner"] = owner
        cursor = await self.col.aggregate(
            [{"$match": match}, {"$group": {"_id": "$site", "n": {"$sum": 1}}}]
        )
        return {str(doc["_id"]): int(doc["n"]) async for doc in cursor}

    async def count_assigned(self, site: str) -> int:
        return await self.col.count_documents({"site": site, "status": JobStatus.ASSIGNED.value})
