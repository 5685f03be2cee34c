"""The self-contained job description a site receives with its lease."""

from __future__ import annotations

from datetime import timedelta

from services.storage.policy import DOWNLOAD_EXPIRY
from shared.artifacts import ArtifactStore
from shared.clock import utcnow
from shared.domain.models import Job
from shared.domain.taskconfig import TaskConfig
from shared.edge_api import (
    CheckpointConfig,
    CheckpointDownload,
    JobSpec,
    OutputFiles,
    PointSpec,
)
from shared.runtime.images import resolve_image
from shared.store import Store

LINEAGE_ALGORITHMS = frozenset({"pbt"})
"""Steering algorithms whose new points start from other points' final checkpoints."""


def _checkpoint_config(config: TaskConfig) -> CheckpointConfig | None:
    if not config.checkpoint_files:
        return None
    return CheckpointConfig(
        save=config.checkpoint_files,
        load=config.checkPointToLoad,
        interval=config.checkPointInterval,
        final=config.steering.algorithm in LINEAGE_ALGORITHMS,
    )


async def build_spec(
    store: Store, job: Job, arch: str, artifacts: ArtifactStore | None = None
) -> JobSpec:
    """The spec of ``job``; with ``artifacts``, it carries a download URL of its point's
    latest checkpoint (a retry resumes from it, at any site)."""
    task = await store.tasks.get(job.task_id)
    if task is None:
        raise LookupError(f"job {job.id} has no task")
    config = task.config
    points = []
    checkpoint: CheckpointDownload | None = None
    for point_id in job.point_ids:
        point = await store.points.get(point_id)
        if point is not None:
            points.append(PointSpec(point_id=point.id, index=point.index, params=point.params))
            ref = point.checkpoint
            if ref is not None and artifacts is not None and config.checkpoint_files:
                url = artifacts.presign_get(ref.key, DOWNLOAD_EXPIRY)
                checkpoint = CheckpointDownload(url=url, size=ref.size, sha256=ref.sha256)
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
        checkpoint_config=_checkpoint_config(config),
        checkpoint=checkpoint,
    )
