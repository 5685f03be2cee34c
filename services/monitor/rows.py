"""Rows of the points, jobs and artifacts tables, with the links a user follows.

Download links are the artifact store's presigned GET URLs (short-lived, bound to one
object), so the browser fetches from the store without the user's token.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from services.monitor.schemas import ArtifactRow, JobRow, PointRow
from services.monitor.snapshot import STATUSES, TaskSnapshot
from services.storage.policy import DOWNLOAD_EXPIRY
from shared.artifacts import ArtifactStore
from shared.domain.models import Artifact, Job


def point_of_job(job_id: str) -> str:
    """``<point>.a<attempt>[.r<n>]`` -> ``<point>``."""
    head, _, tail = job_id.rpartition(".a")
    return head if head and tail.split(".")[0].isdigit() else job_id


def _when(value: float) -> datetime | None:
    return None if math.isnan(value) else datetime.fromtimestamp(value, UTC)


def artifact_row(artifact: Artifact, store: ArtifactStore) -> ArtifactRow:
    return ArtifactRow(
        id=artifact.id,
        point_id=point_of_job(artifact.job_id),
        job_id=artifact.job_id,
        kind=artifact.kind,
        name="/".join(artifact.key.split("/")[2:]) or artifact.key,
        size=artifact.size,
        verified=artifact.verified,
        detail=artifact.detail,
        created=artifact.created,
        url=store.presign_get(artifact.key, DOWNLOAD_EXPIRY),
    )


def job_row(job: Job) -> JobRow:
    return JobRow(
        id=job.id,
        point_ids=job.point_ids,
        segment=job.segment,
        attempt=job.attempt,
        status=job.status.value,
        site=job.site,
        host=job.host,
        reason=job.reason,
        created=job.created,
        updated=job.updated,
    )


def point_row(
    snap: TaskSnapshot,
    row: int,
    jobs: dict[str, Job],
    links: dict[tuple[str, str], str],
) -> PointRow:
    """``links`` maps (job id, kind) to a download URL."""
    loss_row = snap.loss[row].tolist()
    loss: Any = None
    if not all(math.isnan(v) for v in loss_row):
        loss = loss_row[0] if snap.objectives == 1 else loss_row
    params = {
        name: column.decode(float(snap.values(name)[row])) for name, column in snap.params.items()
    }
    created = float(snap.col("created")[row])
    evaluated = float(snap.col("evaluated")[row])
    job_id = snap.job_ids[row]
    job = jobs.get(job_id) if job_id else None
    pruned = int(snap.col("pruned")[row])
    return PointRow(
        id=snap.ids[row],
        segment=snap.segments[row],
        index=int(snap.col("index")[row]),
        status=STATUSES[int(snap.col("status")[row])].value,
        loss=loss,
        params=params,
        attempts=int(snap.col("attempts")[row]),
        preemptions=int(snap.col("preemptions")[row]),
        pruned_step=None if pruned < 0 else pruned,
        created=_when(created),
        evaluated=_when(evaluated),
        seconds=None if math.isnan(evaluated - created) else round(evaluated - created, 3),
        job_id=job_id,
        site=job.site if job else None,
        host=job.host if job else "",
        error=snap.errors[row],
        log_url=links.get((job_id or "", "log")),
        metrics_url=links.get((job_id or "", "metrics")),
    )
