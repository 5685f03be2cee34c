"""Uploading a finished job's artifacts: presigned PUT, then confirm size and sha256.

What goes up: the payload log (its last ``MAX_LOG_BYTES``, so a chatty training loop
cannot fill the store), and for single-point jobs the metrics and meta files the task
names. Jobs with several points keep their per-point files on the site for now: the
artifact request has no point id to tell them apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edge.fsproto import JobPaths
from edge.harvester.api import EdgeApiClient, EdgeApiError
from shared.edge_api import ArtifactConfirm, ArtifactKind, ArtifactUrlRequest, JobSpec

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 16 * 1024 * 1024
MAX_META_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ArtifactFile:
    kind: ArtifactKind
    path: Path


def artifact_files(paths: JobPaths, spec: JobSpec) -> list[ArtifactFile]:
    """The files to upload that exist, in a stable order."""
    found: list[ArtifactFile] = []
    if len(spec.points) == 1:
        point_dir = paths.point_dir(0)
        if spec.files.metrics and (point_dir / spec.files.metrics).is_file():
            found.append(ArtifactFile("metrics", point_dir / spec.files.metrics))
        if spec.files.meta and (point_dir / spec.files.meta).is_file():
            meta = point_dir / spec.files.meta
            if meta.stat().st_size <= MAX_META_BYTES:
                found.append(ArtifactFile("meta", meta))
            else:
                log.warning("job %s: %s is over 1 MB, not uploaded", paths.job_id, meta.name)
    if paths.payload_log.is_file():
        found.append(ArtifactFile("log", paths.payload_log))
    return found


def _read(artifact: ArtifactFile) -> bytes:
    limit = MAX_LOG_BYTES if artifact.kind == "log" else None
    with open(artifact.path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if limit is not None and size > limit:
            handle.seek(size - limit)
            return b"[... log truncated to its last bytes ...]\n" + handle.read()
        handle.seek(0)
        return handle.read()


async def upload_artifacts(
    api: EdgeApiClient, job_id: str, generation: int, files: list[ArtifactFile]
) -> list[str]:
    """Upload ``files``; return the kinds now stored.

    A 4xx from the api (typically a stale lease) ends the uploads quietly: artifacts
    must never hold back the job's result. ApiUnavailableError propagates, so the
    whole report is retried on a later scan.
    """
    if not files:
        return []
    by_kind = {f.kind: f for f in files}
    done: list[str] = []
    try:
        reply = await api.artifact_urls(
            job_id, ArtifactUrlRequest(generation=generation, kinds=list(by_kind))
        )
        for upload in reply.uploads:
            artifact = by_kind.get(upload.kind)
            if artifact is None:
                continue
            data = await asyncio.to_thread(_read, artifact)
            digest = hashlib.sha256(data).hexdigest()
            await api.upload(upload.url, data)
            await api.confirm_artifact(
                job_id,
                ArtifactConfirm(
                    generation=generation,
                    kind=upload.kind,
                    key=upload.key,
                    size=len(data),
                    sha256=digest,
                ),
            )
            done.append(upload.kind)
    except EdgeApiError as exc:
        log.warning("job %s: artifacts not stored: %s", job_id, exc)
    except OSError as exc:
        log.warning("job %s: cannot read an artifact: %s", job_id, exc)
    return done
