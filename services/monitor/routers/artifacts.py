"""``/monitor/api/tasks/{id}/artifacts``: what a task stored, a page at a time.

Metrics tarballs, logs, metadata and checkpoints, each with its size, whether the
storage service verified it, and a presigned download link. ``point`` narrows to one
point's attempts (a range read on the job ids, which start with the point's id).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from services.monitor import reads
from services.monitor.deps import Monitor, OwnTask
from services.monitor.rows import artifact_row
from services.monitor.schemas import ArtifactsPage

router = APIRouter(prefix="/monitor/api/tasks/{task_id}", tags=["monitor"])

Kind = Literal["metrics", "log", "meta", "checkpoint"]


@router.get("/artifacts")
async def artifacts(
    task: OwnTask,
    mon: Monitor,
    point: Annotated[str | None, Query(max_length=400)] = None,
    kind: Kind | None = None,
    after: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ArtifactsPage:
    if point is not None:
        found = [
            a
            for a in await reads.artifacts_of_point(mon.store, task.id, point)
            if kind is None or a.kind == kind
        ]
        rows = [artifact_row(a, mon.artifacts) for a in found]
        return ArtifactsPage(rows=rows, next_after=None)
    page = await reads.artifacts_page(mon.store, task.id, after=after, kind=kind, limit=limit)
    return ArtifactsPage(
        rows=[artifact_row(a, mon.artifacts) for a in page],
        next_after=page[-1].id if len(page) == limit else None,
    )
