"""The self-contained job description a site receives with its lease."""

from __future__ import annotations

from datetime import timedelta

from shared.clock import utcnow
from shared.domain.models import Job
from shared.edge_api import JobSpec, OutputFiles, PointSpec
from shared.runtime.images import resolve_image
from shared.store import Store


async def build_spec(store: Store, job: Job, arch: str) -> JobSpec:
    task = await store.tasks.get(job.task_id)
    if task is None:
        raise LookupError(f"job {job.id} has no task")
    config = task.config
    points = []
    for point_id in job.point_ids:
        point = await store.points.get(point_id)
        if point is not None:
            points.append(PointSpec(point_id=point.id, index=point.index, params=point.params))
    training = [config.trainingDS] if config.trainingDS else []
    if config.segmented:
        segment = await store.segments.get(f"{job.task_id}.{job.segment}")
        if segment is None:
            raise LookupError(f"job {job.id} has no segment {job.segment}")
        training = segment.files
    expires = job.lease.expires if job.lease else utcnow() + timedelta(minutes=1)
    return JobSpec(
        job_id=job.id,
        task_id=job.task_id,
        owner=job.owner,
        segment=job.segment,
        segmented=config.segmented,
        attempt=job.attempt,
        generation=job.generation,
        lease_expires=expires,
        points=points,
        exec=config.evaluationExec,
        container=resolve_image(config.evaluationContainer, arch),
        files=OutputFiles(
            input=config.evaluationInput,
            training_data=config.evaluationTrainingData,
            output=config.evaluationOutput,
            intermediate=config.evaluationIntermediate,
            meta=config.evaluationMeta,
            metrics=config.evaluationMetrics,
        ),
        training_files=training,
        task_files=task.files,
    )
