"""The self-contained job description a site receives with its lease."""

from __future__ import annotations

from datetime import timedelta

from services.storage.policy import DOWNLOAD_EXPIRY
from shared.artifacts import ArtifactStore
from shared.clock import utcnow
from shared.domain.datasets import part_count, part_key
from shared.domain.models import Job
from shared.domain.taskconfig import TaskConfig
from shared.edge_api import (
    CheckpointConfig,
    CheckpointDownload,
    DatasetInput,
    JobSpec,
    OutputFiles,
    PointSpec,
    StagedFile,
)
from shared.runtime.images import resolve_image
from shared.store import Store
from shared.store.constants import Constants

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


async def dataset_input(
    store: Store,
    artifacts: ArtifactStore | None,
    owner: str,
    name: str,
    select: list[str] | None,
) -> DatasetInput:
    """What a site needs to stage dataset ``name`` of ``owner``: the selected files of
    a ready upload with download URLs of their parts, or the bare name (the site may
    hold it itself)."""
    dataset = await store.datasets.get_for_owner(owner, name)
    if dataset is None or dataset.status != "ready" or artifacts is None:
        return DatasetInput(name=name, select=select)
    chosen = set(select) if select is not None else None
    files = [
        StagedFile(
            name=f.name,
            size=f.size,
            sha256=f.sha256,
            parts=[
                artifacts.presign_get(part_key(owner, name, f.sha256, n), DOWNLOAD_EXPIRY)
                for n in range(1, part_count(f.size, dataset.part_size) + 1)
            ],
        )
        for f in dataset.files
        if chosen is None or f.name in chosen
    ]
    return DatasetInput(name=name, files=files, select=select)


async def build_spec(
    store: Store,
    constants: Constants,
    job: Job,
    arch: str,
    artifacts: ArtifactStore | None = None,
) -> JobSpec:
    """The spec of ``job``; with ``artifacts``, it carries a download URL of its point's
    latest checkpoint (a retry resumes from it, at any site)."""
    task = await constants.task(job.task_id)
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
    wanted: list[tuple[str, list[str] | None]] = [(n, None) for n in training]
    if config.segmented:
        wanted_id = f"{job.task_id}.{job.segment}"
        segments = await constants.segments(job.task_id)
        segment = next((s for s in segments if s.id == wanted_id), None)
        if segment is None:
            raise LookupError(f"job {job.id} has no segment {job.segment}")
        training = [*segment.files, *segment.datasets]
        wanted = [(n, None) for n in segment.datasets]
        if segment.files and config.trainingDS:
            wanted.insert(0, (config.trainingDS, list(segment.files)))
    datasets = [await dataset_input(store, artifacts, job.owner, n, s) for n, s in wanted]
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
        compute_class=job.compute_class,
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
        datasets=datasets,
        task_files=task.files,
        checkpoint_config=_checkpoint_config(config),
        checkpoint=checkpoint,
    )
