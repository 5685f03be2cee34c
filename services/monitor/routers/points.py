"""``/monitor/api/tasks/{id}/points``: the points table and one point's whole story.

Sorting, filtering and paging run on the snapshot; only the page's own jobs and
artifacts are read from the database (one indexed read per job, one range read for
the artifacts), so a page costs the same at 100 points or 100,000.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from services.monitor import reads, table
from services.monitor.deps import FirstView, Monitor, OwnEntry, OwnFirst
from services.monitor.rows import artifact_row, job_row, point_row
from services.monitor.schemas import PointDetail, PointsPage
from services.monitor.snapshot import TaskSnapshot
from services.storage.policy import DOWNLOAD_EXPIRY

router = APIRouter(prefix="/monitor/api/tasks/{task_id}", tags=["monitor"])


def _unprocessable(exc: table.TableQueryError) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["query", exc.field], "msg": str(exc), "type": "value_error"}],
    )


@router.get("/points")
async def points(
    first: OwnFirst,
    mon: Monitor,
    sort: Annotated[str, Query(max_length=100)] = "index",
    filter_text: Annotated[str, Query(alias="filter", max_length=2000)] = "",
    segment: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=table.PAGE_LIMIT)] = 50,
) -> PointsPage:
    seg = segment or (first.entry.segments[0] if len(first.entry.segments) == 1 else None)
    if first.view is not None and seg and sort == "index" and not filter_text and not cursor:
        head = await _head(first, mon, seg, limit)
        if head is not None:
            return head
    entry = await first.loaded()
    snap = entry.snapshot
    clauses = filter_text
    if segment:
        clauses = f"segment={segment},{filter_text}"
    try:
        found = table.page(snap, sort=sort, filter_text=clauses, cursor=cursor, limit=limit)
    except table.TableQueryError as exc:
        raise _unprocessable(exc) from None
    return await _page(
        mon, entry.task.id, snap, found.rows.tolist(), found.total, found.next_cursor
    )


async def _head(first: FirstView, mon: Monitor, segment: str, limit: int) -> PointsPage | None:
    """The first page in index order while the task loads: one bounded range read
    (indices 0 to ``limit``) into a snapshot of its own. None when that range does not
    hold the page (indices with gaps): the caller waits for the load."""
    assert first.view is not None
    entry = first.entry
    total = sum(first.view.counts.get(segment, {}).values())
    docs = await reads.head_points(mon.store, entry.task.id, segment, limit)
    if len(docs) < min(limit, total):
        return None
    categorical = {n for n, c in entry.snapshot.params.items() if c.categorical}
    categorical |= {
        d.name for sp in entry.spaces.values() for d in sp.dimensions if d.kind == "categorical"
    }
    head = TaskSnapshot(entry.snapshot.objectives, categorical)
    head.apply(docs)
    rows = list(range(head.rows))
    more = None
    if total > len(rows) and rows:
        # the row part past any real row: the full table resumes after this index
        more = table.encode_cursor(float(head.col("index")[-1]), table.AFTER_EVERY_ROW)
    return await _page(mon, entry.task.id, head, rows, total, more)


async def _page(
    mon: Monitor,
    task_id: str,
    snap: TaskSnapshot,
    rows: list[int],
    total: int,
    next_cursor: str | None,
) -> PointsPage:
    job_ids = [j for j in (snap.job_ids[r] for r in rows) if j]
    jobs = await reads.jobs_by_id(mon.store, job_ids)
    artifacts = await reads.artifacts_of_jobs(mon.store, task_id, job_ids) if job_ids else []
    links = {
        (a.job_id, a.kind): mon.artifacts.presign_get(a.key, DOWNLOAD_EXPIRY)
        for a in artifacts
        if a.verified is not False
    }
    return PointsPage(
        rows=[point_row(snap, r, jobs, links) for r in rows],
        total=total,
        next_cursor=next_cursor,
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
