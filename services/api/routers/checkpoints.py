"""``/edge/v1/jobs/{job}/checkpoints``: snapshots of a running job, uploaded by its site.

The harvester declares each snapshot's size and sha256 before it gets a presigned PUT
URL (over 100 MB is refused there), uploads, then confirms; the confirmation is checked
against the object actually stored, and only a matching one becomes the point's
checkpoint, which the point's next job (a retry, at any site) restores. Like job events,
both calls are conditional on the lease generation of a live job: a late upload from a
lost lease is refused and changes nothing.
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, HTTPException, status

from services.api.deps import Ctx, EdgeToken
from services.api.routers.edge import job_of
from services.storage.policy import MAX_CHECKPOINT_BYTES, UPLOAD_EXPIRY, checkpoint_key
from shared.artifacts import ArtifactNotFoundError, ArtifactStore
from shared.domain.models import Artifact, CheckpointRef, Job, JobStatus
from shared.edge_api import (
    CheckpointConfirm,
    CheckpointConfirmReply,
    CheckpointUpload,
    CheckpointUrlRequest,
)
from shared.messages import CheckpointSaved

router = APIRouter(prefix="/edge/v1", tags=["edge"])


def _check_live(job: Job, generation: int) -> None:
    if generation != job.generation or job.status not in (JobStatus.LEASED, JobStatus.RUNNING):
        raise HTTPException(status.HTTP_409_CONFLICT, "lease lost or superseded")


def _check_size(size: int) -> None:
    if size > MAX_CHECKPOINT_BYTES:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"size: a checkpoint of {size} bytes is over the limit of {MAX_CHECKPOINT_BYTES} bytes",
        )


@router.post("/jobs/{job_id}/checkpoints")
async def checkpoint_url(
    job_id: str, body: CheckpointUrlRequest, ctx: Ctx, token: EdgeToken
) -> CheckpointUpload:
    job = await job_of(ctx, token, job_id)
    _check_live(job, body.generation)
    _check_size(body.size)
    key = checkpoint_key(job.owner, job.task_id, job.id, body.seq)
    return CheckpointUpload(key=key, url=ctx.artifacts.presign_put(key, UPLOAD_EXPIRY))


async def _stored_mismatch(artifacts: ArtifactStore, body: CheckpointConfirm) -> str:
    """Why the stored object is not what the site declared; "" when it is."""
    info = await artifacts.stat(body.key)
    if info is None:
        return f"key: nothing was uploaded under {body.key}"
    if info.size != body.size:
        return f"size: the stored object has {info.size} bytes, {body.size} were declared"
    try:
        data = await artifacts.get_bytes(body.key)
    except ArtifactNotFoundError:
        return f"key: the object under {body.key} vanished during verification"
    if hashlib.sha256(data).hexdigest() != body.sha256:
        return "sha256: the stored object's digest differs from the declared one"
    return ""


@router.post("/jobs/{job_id}/checkpoints/confirm")
async def confirm_checkpoint(
    job_id: str, body: CheckpointConfirm, ctx: Ctx, token: EdgeToken
) -> CheckpointConfirmReply:
    job = await job_of(ctx, token, job_id)
    _check_live(job, body.generation)
    _check_size(body.size)
    if body.key != checkpoint_key(job.owner, job.task_id, job.id, body.seq):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "key: does not belong to this job's snapshot"
        )
    problem = await _stored_mismatch(ctx.artifacts, body)
    if problem:
        await ctx.artifacts.delete(body.key)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problem)
    ref = CheckpointRef(
        key=body.key, size=body.size, sha256=body.sha256, job_id=job.id, seq=body.seq
    )
    await ctx.store.artifacts.upsert(
        Artifact(
            id=f"{job.id}.checkpoint.{body.seq}",
            owner=job.owner,
            task_id=job.task_id,
            job_id=job.id,
            kind="checkpoint",
            key=body.key,
            size=body.size,
            sha256=body.sha256,
            verified=True,
        )
    )
    stored = False
    for point_id in job.point_ids:
        if await ctx.store.points.save_checkpoint(point_id, ref):
            stored = True
            await ctx.bus.publish(
                CheckpointSaved(task_id=job.task_id, job_id=job.id, point_id=point_id, key=body.key)
            )
    return CheckpointConfirmReply(stored=stored)
