"""``/monitor/api/tasks/{id}/jobs``: a task's jobs by state, and the tail of a job's log.

The jobs in flight and the latest failures are indexed reads; the count per state is a
scan of the task's jobs, kept by cost (:class:`CostBounded`). Older attempts of a point
are on the point's own page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from services.monitor import reads
from services.monitor.deps import Monitor, OwnTask
from services.monitor.rows import job_row
from services.monitor.schemas import JobsView, LogTail
from shared.artifacts import ArtifactNotFoundError
from shared.domain.models import JobStatus

router = APIRouter(prefix="/monitor/api/tasks/{task_id}", tags=["monitor"])

TAIL_BYTES = 16_000
DEFAULT_STATES = ("defined", "assigned", "leased", "running", "failed", "lost", "preempted")


@router.get("/jobs")
async def jobs(
    task: OwnTask,
    mon: Monitor,
    state: Annotated[list[JobStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobsView:
    """The jobs in ``state`` (default: in flight and ended badly), newest change first."""
    states = [s.value for s in state] if state else list(DEFAULT_STATES)
    counts = await mon.job_counts.get(
        ("jobs", task.id, task.version), lambda: reads.job_state_counts(mon.store, task.id)
    )
    found = await reads.jobs_in_state(mon.store, task.id, states, limit=limit)
    return JobsView(counts=counts, jobs=[job_row(j) for j in found])


@router.get("/jobs/{job_id}/log")
async def log_tail(job_id: str, task: OwnTask, mon: Monitor) -> LogTail:
    """The last 16 kB of the job's log, as uploaded by its site."""
    point_id = job_id.rpartition(".a")[0]
    logs = [
        a
        for a in await reads.artifacts_of_point(mon.store, task.id, point_id)
        if a.job_id == job_id and a.kind == "log"
    ]
    if not logs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no log for job {job_id}")
    try:
        data = await mon.artifacts.get_bytes(logs[-1].key)
    except ArtifactNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the log is gone from the store") from None
    tail = data[-TAIL_BYTES:]
    return LogTail(
        job_id=job_id,
        size=len(data),
        text=tail.decode("utf-8", errors="replace"),
        truncated=len(data) > TAIL_BYTES,
    )
