"""``/monitor/api/tasks/{id}/points``: the points table and one point's whole story.

Sorting, filtering and paging run on the snapshot; only the page's own jobs and
artifacts are read from the database (one indexed read per job, one range read for
the artifacts), so a page costs the same at 100 points or 100,000.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from services.monitor import reads, table
from services.monitor.deps import Monitor, OwnEntry
from services.monitor.rows import artifact_row, job_row, point_row
from services.monitor.schemas import PointDetail, PointsPage
from services.storage.policy import DOWNLOAD_EXPIRY

router = APIRouter(prefix="/monitor/api/tasks/{task_id}", tags=["monitor"])


def _unprocessable(exc: table.TableQueryError) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}],
    )


@router.get("/points")
async def points(
    entry: OwnEntry,
    mon: Monitor,
    sort: Annotated[str, Query(max_length=100)] = "index",
    filter_text: Annotated[str, Query(alias="filter", max_length=2000)] = "",
    segment: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=table.PAGE_LIMIT)] = 50,
) -> PointsPage:
    snap = entry.snapshot
    clauses = filter_text
    if segment:
        clauses = f"segment={segment},{filter_text}"
    try:
        found = table.page(snap, sort=sort, filter_text=clauses, cursor=cursor, limit=limit)
    except table.TableQueryError as exc:
        raise _unprocessable(exc) from None
    rows = found.rows.tolist()
    job_ids = [j for j in (snap.job_ids[r] for r in rows) if j]
    jobs = await reads.jobs_by_id(mon.store, job_ids)
    artifacts = await reads.artifacts_of_jobs(mon.store, entry.task.id, job_ids) if job_ids else []
    links = {
        (a.job_id, a.kind): mon.artifacts.presign_get(a.key, DOWNLOAD_EXPIRY)
        for a in artifacts
        if a.verified is not False
    }
    return PointsPage(
        rows=[point_row(snap, r, jobs, links) for r in rows],
        total=found.total,
        next_cursor=found.next_cursor,
        params=list(snap.params),
    )


@router.get("/points/{point_id}")
async def point(point_id: str, entry: OwnEntry, mon: Monitor) -> PointDetail:
    snap = entry.snapshot
    row = snap.row_of(point_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no point {point_id} in this task")
    jobs = await reads.jobs_of_point(mon.store, point_id)
    stored = await mon.store.points.get(point_id)
    artifacts = await reads.artifacts_of_point(mon.store, entry.task.id, point_id)
    rows = [artifact_row(a, mon.artifacts) for a in artifacts]
    links = {(a.job_id, a.kind): a.url for a in rows}
    curve = snap.curves.get(row)
    return PointDetail(
        point=point_row(snap, row, {j.id: j for j in jobs}, links),
        jobs=[job_row(j) for j in jobs],
        artifacts=rows,
        intermediate={}
        if curve is None
        else {"steps": curve[0].astype(float).tolist(), "values": curve[1].tolist()},
        metrics={} if stored is None else stored.metrics,
    )
