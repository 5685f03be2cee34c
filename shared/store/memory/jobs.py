"""Jobs in memory (see :mod:`shared.store.jobs` for the MongoDB twin): every move is
conditional on the job's status (from :data:`~shared.domain.models.JOB_STATES`) and,
for an edge-facing one, on its lease generation. The task's ``open_jobs`` and the site's
``assigned_jobs`` move as :mod:`shared.store.jobs` says."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

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
from shared.store.documents import Doc, from_doc, to_doc
from shared.store.errors import DuplicateKeyError
from shared.store.memory.base import MemoryRepository
from shared.store.memory.table import Table, add_to_set, field, pull, set_field

_LIVE = (JobStatus.LEASED.value, JobStatus.RUNNING.value)
_ACTIVE = {s.value for s in ACTIVE_JOB_STATES}
_TERMINAL = {s.value for s in TERMINAL_JOB_STATES}


class MemoryJobRepository(MemoryRepository[Job]):
    model = Job

    def __init__(self, tasks: Table, sites: Table) -> None:
        super().__init__(Table("jobs"))
        self.tasks = tasks
        self.sites = sites

    async def get_many(self, job_ids: list[str]) -> list[Job]:
        docs = [self.table.get(i) for i in dict.fromkeys(job_ids)]
        return [from_doc(Job, d) for d in docs if d is not None]

    async def insert(self, job: Job, *, counted: bool = False) -> bool:
        add_to_set(self.tasks, job.task_id, "open_jobs", [job.id])
        if counted:
            self._count(job.task_id, 1)
        try:
            self.table.insert(to_doc(job))
        except DuplicateKeyError:
            there = self.table.get(job.id)
            if there is None or there.get("applied"):
                pull(self.tasks, job.task_id, "open_jobs", [job.id])
            if counted:
                self._count(job.task_id, -1)
            return False
        return True

    async def insert_many(self, jobs: list[Job]) -> None:
        for item in jobs:  # in order, as an ordered insert_many
            self.table.insert(to_doc(item))

    def _count(self, task_id: str, delta: int) -> None:
        if self.tasks.get(task_id) is not None:
            self.tasks.update(
                task_id, lambda d: d.update(jobs_counted=int(d.get("jobs_counted") or 0) + delta)
            )

    async def open_ids(self, task_id: str) -> list[str]:
        return [
            d["_id"]
            for d in self.table.scan()
            if d["task_id"] == task_id and d.get("applied") is False
        ]

    async def assigned_ids(self, site: str) -> list[str]:
        return [
            d["_id"]
            for d in self.table.scan()
            if d["status"] == JobStatus.ASSIGNED.value and d.get("site") == site
        ]

    async def count(self, task_id: str, *, active_only: bool) -> int:
        def counts(d: Doc) -> bool:
            if d["task_id"] != task_id:
                return False
            return d["status"] in _ACTIVE if active_only else d["status"] != "preempted"

        return sum(1 for d in self.table.scan() if counts(d))

    async def list_for_task(self, task_id: str, *, limit: int = 0) -> list[Job]:
        return self._find(
            lambda d: d["task_id"] == task_id, sort=lambda d: d["created"], limit=limit
        )

    async def page_for_task(
        self,
        task_id: str,
        page: PageRequest,
        *,
        status: JobStatus | None = None,
        site: str | None = None,
    ) -> list[Job]:
        def match(d: Doc) -> bool:
            if d["task_id"] != task_id:
                return False
            if status is not None and d["status"] != status.value:
                return False
            return site is None or d.get("site") == site

        return self._page(match, "created", page)

    async def list_by_status(self, status: JobStatus, *, limit: int = 100) -> list[Job]:
        return self._find(
            lambda d: d["status"] == status.value, sort=lambda d: d["created"], limit=limit
        )

    async def list_for_point(self, point_id: str) -> list[Job]:
        lo, hi = f"{point_id}.a", f"{point_id}.b"
        return self._find(lambda d: lo <= d["_id"] < hi, sort=lambda d: d["_id"])

    async def list_in_states(
        self, task_id: str, states: list[JobStatus], *, limit: int
    ) -> list[Job]:
        wanted = {s.value for s in states}
        return self._find(
            lambda d: d["task_id"] == task_id and d["status"] in wanted,
            sort=lambda d: d["updated"],
            reverse=True,
            limit=limit,
        )

    async def count_by_status(self, task_id: str) -> dict[str, int]:
        return dict(Counter(d["status"] for d in self.table.scan() if d["task_id"] == task_id))

    async def live_by_site(self, owner: str | None = None) -> dict[str, int]:
        return dict(
            Counter(
                str(d.get("site"))
                for d in self.table.scan()
                if d["status"] in _LIVE and (owner is None or d.get("owner") == owner)
            )
        )

    def _move(
        self,
        job_id: str,
        new: JobStatus,
        *,
        status: tuple[str, ...] | None = None,
        generation: int | None = None,
        **fields: Any,
    ) -> bool:
        """``new`` from ``status`` (default: every status the state machine lets
        precede it), stamping the time it entered ``new``."""
        allowed = status or tuple(s.value for s in JOB_STATES.sources(new))
        doc = self.table.get(job_id)
        if doc is None or doc["status"] not in allowed:
            return False
        if generation is not None and doc.get("generation") != generation:
            return False
        now = utcnow()

        def change(d: Doc) -> None:
            for name, value in {"status": new.value, "updated": now, **fields}.items():
                set_field(d, name, value)
            set_field(d, f"stamps.{new.value}", now)

        self.table.update(job_id, change)
        return True

    async def assign(self, job_id: str, site: str, compute_class: str | None = None) -> bool:
        add_to_set(self.sites, site, "assigned_jobs", [job_id])
        if self._move(
            job_id,
            JobStatus.ASSIGNED,
            status=(JobStatus.DEFINED.value,),
            site=site,
            compute_class=compute_class,
        ):
            return True
        there = self.table.get(job_id)
        if (
            there is None
            or there["status"] != JobStatus.ASSIGNED.value
            or there.get("site") != site
        ):
            pull(self.sites, site, "assigned_jobs", [job_id])
        return False

    async def unassign(self, job_id: str) -> bool:
        before = self.table.get(job_id)
        if not self._move(
            job_id,
            JobStatus.DEFINED,
            status=(JobStatus.ASSIGNED.value,),
            site=None,
            compute_class=None,
        ):
            return False
        if before is not None and before.get("site"):
            pull(self.sites, str(before["site"]), "assigned_jobs", [job_id])
        return True

    async def lease_next(self, site: str, holder: str, expires: datetime) -> Job | None:
        found = self.table.find(
            lambda d: d["status"] == JobStatus.ASSIGNED.value and d.get("site") == site,
            sort=lambda d: d["created"],
            limit=1,
        )
        if not found:
            return None
        now = utcnow()

        def change(d: Doc) -> None:
            d["status"] = JobStatus.LEASED.value
            set_field(d, "lease", {"holder": holder, "expires": expires})
            set_field(d, "updated", now)
            set_field(d, "stamps.leased", now)
            d["generation"] = int(d.get("generation") or 0) + 1

        job_id = found[0]["_id"]
        self.table.update(job_id, change)
        pull(self.sites, site, "assigned_jobs", [job_id])
        after = self.table.get(job_id)
        return None if after is None else from_doc(Job, after)

    async def extend_lease(
        self, job_id: str, generation: int, expires: datetime, *, running: bool, host: str = ""
    ) -> bool:
        doc = self.table.get(job_id)
        if doc is None or doc.get("generation") != generation or doc["status"] not in _LIVE:
            return False
        now = utcnow()

        def change(d: Doc) -> None:
            set_field(d, "lease.expires", expires)
            set_field(d, "updated", now)
            if running:
                d["status"] = JobStatus.RUNNING.value
                first = field(d, "stamps.running")
                if first is None or now < first:  # the first start counts
                    set_field(d, "stamps.running", now)
                if host:
                    d["host"] = host

        self.table.update(job_id, change)
        return True

    async def finish(self, job_id: str, generation: int, results: list[PointOutcome]) -> bool:
        return self._move(
            job_id,
            JobStatus.FINISHED,
            status=_LIVE,
            generation=generation,
            results=[r.model_dump() for r in results],
        )

    async def fail(self, job_id: str, generation: int, reason: str) -> bool:
        return self._move(
            job_id, JobStatus.FAILED, status=_LIVE, generation=generation, reason=reason
        )

    async def preempt(self, job_id: str, generation: int, reason: str) -> bool:
        return self._move(
            job_id, JobStatus.PREEMPTED, status=_LIVE, generation=generation, reason=reason
        )

    async def live_at_site(self, site: str) -> list[Job]:
        return self._find(
            lambda d: d.get("site") == site and d["status"] in _LIVE, sort=lambda d: d["created"]
        )

    async def expired_leases(self, now: datetime, *, limit: int = 100) -> list[Job]:
        def expired(d: Doc) -> bool:
            until = field(d, "lease.expires")
            return d["status"] in _LIVE and isinstance(until, datetime) and until < now

        return self._find(expired, limit=limit)

    async def mark_lost(self, job_id: str, generation: int, reason: str) -> bool:
        return self._move(
            job_id, JobStatus.LOST, status=_LIVE, generation=generation, reason=reason
        )

    async def cancel_task_jobs(self, task_id: str, reason: str) -> int:
        mine = [d for d in self.table.scan() if d["task_id"] == task_id]
        active = [d["_id"] for d in mine if d["status"] in _ACTIVE]
        waiting: dict[str, list[str]] = {}
        for d in mine:
            if d["status"] == JobStatus.ASSIGNED.value and d.get("site"):
                waiting.setdefault(str(d["site"]), []).append(d["_id"])
        now = utcnow()

        def change(d: Doc) -> None:
            d.update(status=JobStatus.CANCELLED.value, reason=reason)
            set_field(d, "updated", now)
            set_field(d, "stamps.cancelled", now)

        for id_ in active:
            self.table.update(id_, change)
        for site, job_ids in waiting.items():
            pull(self.sites, site, "assigned_jobs", job_ids)
        return len(active)

    async def unapplied(self, *, limit: int = 200) -> list[Job]:
        return self._find(
            lambda d: d["status"] in _TERMINAL and d.get("applied") is False,
            sort=lambda d: d["updated"],
            limit=limit,
        )

    async def count_unapplied(self, task_id: str) -> int:
        return sum(
            1 for d in self.table.scan() if d["task_id"] == task_id and d.get("applied") is False
        )

    async def mark_applied(self, job_id: str, *, close: bool = True) -> bool:
        doc = self.table.get(job_id)
        if doc is None or doc.get("applied") is not False:
            return False
        self.table.update(job_id, lambda d: d.update(applied=True))
        if close:
            pull(self.tasks, str(doc["task_id"]), "open_jobs", [job_id])
        return True

    async def count_assigned(self, site: str) -> int:
        return sum(
            1
            for d in self.table.scan()
            if d.get("site") == site and d["status"] == JobStatus.ASSIGNED.value
        )
