"""Building a task's export record from the database (for the api and the MLflow
mirror): its points with their curves, the attempt that counted, its site and times,
and its verified metrics tarball."""

from __future__ import annotations

from services.storage.policy import DOWNLOAD_EXPIRY
from shared.artifacts import ArtifactStore
from shared.domain.models import Job, Task
from shared.exports.record import PointRecord, SegmentRecord, TaskRecord
from shared.store import Store


async def task_record(
    store: Store, task: Task, *, artifacts: ArtifactStore | None = None
) -> TaskRecord:
    """The record of ``task``; with ``artifacts``, metrics tarballs get download URLs."""
    segments = await store.segments.list_for_task(task.id)
    jobs: dict[str, Job] = {j.id: j for j in await store.jobs.list_for_task(task.id)}
    metrics = {
        a.job_id: a.key
        for a in await store.artifacts.list_for_task(task.id)
        if a.kind == "metrics" and a.verified
    }
    points: list[PointRecord] = []
    for segment in sorted(segments, key=lambda s: s.index):
        for trial in await store.curves.trials(task.id, segment.name):
            point = trial.point
            job_id = point.counted_job_id or point.job_id
            job = jobs.get(job_id) if job_id else None
            key = metrics.get(job_id) if job_id else None
            points.append(
                PointRecord(
                    id=point.id,
                    segment=point.segment,
                    index=point.index,
                    params=point.params,
                    status=point.status,
                    loss=point.loss,
                    attempts=point.attempts,
                    last_error=point.last_error,
                    pruned_step=point.pruned_step,
                    intermediate=trial.intermediate,
                    job_id=job_id,
                    site=job.site if job else None,
                    host=job.host if job else "",
                    created=point.created,
                    started=job.stamps.get("running") if job else None,
                    evaluated=point.evaluated,
                    metrics_key=key,
                    metrics_url=(
                        artifacts.presign_get(key, DOWNLOAD_EXPIRY) if key and artifacts else None
                    ),
                )
            )
    return TaskRecord(
        id=task.id,
        name=task.name,
        owner=task.owner,
        status=task.status,
        reason=task.reason,
        online=task.config.online,
        segmented=task.config.segmented,
        created=task.created,
        updated=task.updated,
        directions=await _directions(store, task),
        failed_point_loss=task.config.failedPointLoss,
        segments=[
            SegmentRecord(name=s.name, index=s.index, search_space=s.search_space)
            for s in sorted(segments, key=lambda s: s.index)
        ],
        points=points,
    )


async def _directions(store: Store, task: Task) -> list[str]:
    if task.config.steering.directions:
        return list(task.config.steering.directions)
    if task.config.online:
        study = await store.studies.get(task.id)
        if study is not None:
            return [study.direction]
    return ["minimize"]
