"""Uploading a running job's newest checkpoint snapshot, once (harvester side).

On each scan, and before a job's end is reported, the newest snapshot in
``checkpoints/`` that was not handled yet goes up: the api is told its size and sha256
and answers with a presigned URL; after the PUT the api checks the stored object
against both before the point records it. The sequence number handled last is kept in
``harvester.json``, so neither a restart nor the next scan uploads a snapshot twice;
snapshots superseded before they were uploaded are skipped, since only the newest
counts. A refusal (over the size limit, lease lost, mismatch) is final for that
snapshot; an unreachable api or store is retried on the next scan.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from edge.harvester.api import EdgeApiClient, EdgeApiError
from edge.harvester.jobs import TrackedJob
from edge.harvester.payloadfile import PayloadFileLimits, PayloadReader, read_bytes
from edge.snapshots import newest_snapshot
from shared.edge_api import CheckpointConfirm, CheckpointUrlRequest

log = logging.getLogger(__name__)

RETRY_LATER_STATUSES = frozenset({401, 408})


async def upload_new_snapshot(
    api: EdgeApiClient, job: TrackedJob, reader: PayloadReader | None = None
) -> bool:
    """Upload the job's newest snapshot if it is new; True if one was stored.

    The snapshot is read as any file a payload could have replaced
    (edge/harvester/payloadfile.py): PayloadFileError if it is not a regular file in
    ``checkpoints/`` or over ``max_artifact_bytes``. ApiUnavailableError propagates
    (the caller retries on a later scan)."""
    if job.doc.spec.checkpoint_config is None:
        return False
    snapshot = await asyncio.to_thread(newest_snapshot, job.paths.checkpoints)
    if snapshot is None or snapshot.seq <= job.record.checkpoint_uploaded:
        return False
    limits = reader.limits if reader is not None else PayloadFileLimits()
    relative = f"{job.paths.checkpoints.name}/{snapshot.path.name}"
    read = (job.paths.dir, relative, limits.max_artifact_bytes, snapshot.path.name)
    if reader is not None:
        found = await reader.call(snapshot.path.name, read_bytes, *read)
    else:
        found = await asyncio.to_thread(read_bytes, *read)
    if found is None:  # pruned by the agent meanwhile: a newer one exists
        log.info("job %s: snapshot %s gone before upload", job.job_id, snapshot.seq)
        return False
    data = found
    digest = hashlib.sha256(data).hexdigest()
    stored = False
    try:
        upload = await api.checkpoint_url(
            job.job_id,
            CheckpointUrlRequest(
                generation=job.generation, seq=snapshot.seq, size=len(data), sha256=digest
            ),
        )
        await api.upload(upload.url, data)
        reply = await api.confirm_checkpoint(
            job.job_id,
            CheckpointConfirm(
                generation=job.generation,
                seq=snapshot.seq,
                key=upload.key,
                size=len(data),
                sha256=digest,
            ),
        )
        stored = reply.stored
        log.info("job %s: checkpoint %d uploaded (%d bytes)", job.job_id, snapshot.seq, len(data))
    except EdgeApiError as exc:
        if exc.status in RETRY_LATER_STATUSES:
            log.warning("job %s: checkpoint upload refused for now: %s", job.job_id, exc)
            return False
        log.warning("job %s: checkpoint %d not stored: %s", job.job_id, snapshot.seq, exc)
    job.record.checkpoint_uploaded = snapshot.seq
    await asyncio.to_thread(job.save_record)
    return stored
