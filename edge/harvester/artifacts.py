"""Uploading a finished job's artifacts: presigned PUT, then confirm size and sha256.

What goes up: the payload log (its last ``MAX_LOG_BYTES``, so a chatty training loop
cannot fill the store), and for single-point jobs the metrics and meta files the task
names, each read as the payload's other files are (edge/harvester/payloadfile.py:
regular files inside the job directory only, within the site's size limits). Jobs
with several points keep their per-point files on the site for now: the artifact
request has no point id to tell them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass

from edge.fsproto import JobPaths
from edge.harvester.api import EdgeApiClient, EdgeApiError
from edge.harvester.payloadfile import PayloadFileError, PayloadFileLimits, open_regular, read_bytes
from shared.edge_api import ArtifactConfirm, ArtifactKind, ArtifactUrlRequest, JobSpec

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ArtifactFile:
    kind: ArtifactKind
    relative: str
    """Below the job directory, read through :mod:`edge.harvester.payloadfile`."""
    max_bytes: int

    @property
    def name(self) -> str:
        return self.relative.rsplit("/", 1)[-1]


def artifact_files(
    paths: JobPaths, spec: JobSpec, limits: PayloadFileLimits | None = None
) -> tuple[list[ArtifactFile], str]:
    """The files to upload that exist, in a stable order, and why a metrics or meta
    file was refused ("" if none was): not a regular file inside the job directory, or
    over its limit. The job fails with that reason. Blocking: call it off the loop."""
    limits = limits or PayloadFileLimits()
    found: list[ArtifactFile] = []
    refused = ""
    if len(spec.points) == 1:
        wanted: list[tuple[ArtifactKind, str | None, int]] = [
            ("metrics", spec.files.metrics, limits.max_artifact_bytes),
            ("meta", spec.files.meta, limits.max_json_bytes),
        ]
        for kind, name, cap in wanted:
            if not name:
                continue
            artifact = ArtifactFile(kind, f"points/0/{name}", cap)
            try:
                if _check(paths, artifact):
                    found.append(artifact)
            except PayloadFileError as exc:
                refused = refused or str(exc)
    log_file = ArtifactFile("log", paths.payload_log.name, MAX_LOG_BYTES)
    with contextlib.suppress(PayloadFileError):  # a replaced log: its tail is enough
        if _check(paths, log_file):
            found.append(log_file)
    return found, refused


def _check(paths: JobPaths, artifact: ArtifactFile) -> bool:
    """True if the file exists and may be uploaded; PayloadFileError if it may not."""
    fd = open_regular(paths.dir, artifact.relative, artifact.name)
    if fd is None:
        return False
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if artifact.kind != "log" and size > artifact.max_bytes:
        raise PayloadFileError(
            f"{artifact.name} is {size} bytes, over the site's limit of {artifact.max_bytes}"
        )
    return True


def _read(paths: JobPaths, artifact: ArtifactFile) -> bytes:
    if artifact.kind != "log":
        data = read_bytes(paths.dir, artifact.relative, artifact.max_bytes, artifact.name)
        if data is None:
            raise FileNotFoundError(artifact.relative)
        return data
    fd = open_regular(paths.dir, artifact.relative, artifact.name)
    if fd is None:
        raise FileNotFoundError(artifact.relative)
    try:
        size = os.fstat(fd).st_size
        if size > MAX_LOG_BYTES:
            tail = os.pread(fd, MAX_LOG_BYTES, size - MAX_LOG_BYTES)
            return b"[... log truncated to its last bytes ...]\n" + tail
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


async def upload_artifacts(
    api: EdgeApiClient, paths: JobPaths, generation: int, files: list[ArtifactFile]
) -> list[str]:
    """Upload ``files``; return the kinds now stored.

    A 4xx from the api (typically a stale lease) ends the uploads quietly: artifacts
    must never hold back the job's result. ApiUnavailableError propagates, so the
    whole report is retried on a later scan.
    """
    if not files:
        return []
    job_id = paths.job_id
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
            data = await asyncio.to_thread(_read, paths, artifact)
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
    except (OSError, PayloadFileError) as exc:
        log.warning("job %s: cannot read an artifact: %s", job_id, exc)
    return done
