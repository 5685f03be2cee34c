"""Uploading ended jobs' artifacts: presigned PUT, then confirm size and sha256; the
URLs and the confirms of all the jobs a scan reports in one request each.

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
from dataclasses import dataclass, field

from edge.fsproto import JobPaths
from edge.harvester.api import ApiUnavailableError, EdgeApiClient, EdgeApiError
from edge.harvester.payloadfile import PayloadFileError, PayloadFileLimits, open_regular, read_bytes
from shared.edge_api import (
    MAX_REPORTS,
    ArtifactConfirm,
    ArtifactConfirmBatch,
    ArtifactKind,
    ArtifactUrlBatch,
    ArtifactUrlRequest,
    JobArtifactConfirm,
    JobArtifactUrls,
    JobSpec,
    PresignedUpload,
)

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


@dataclass
class JobUploads:
    """A job's artifact files to upload, and what became of them."""

    paths: JobPaths
    generation: int
    files: list[ArtifactFile]
    stored: list[str] = field(default_factory=list)
    """The kinds confirmed."""
    retry: bool = False
    """The store or the api could not be reached: report the job on a later scan."""


class ArtifactUploader:
    """Uploads the artifacts of many jobs: one request for every job's upload URLs, the
    PUTs concurrently (at most ``at_once``), one request confirming all. An api without
    the batched calls (404 or 405) gets one request per job, and per file, from then on.

    A 4xx from the api (typically a stale lease) ends a job's uploads quietly:
    artifacts must never hold back the job's result. ApiUnavailableError from the api
    propagates (every job is reported on a later scan); an unreachable store marks
    only that job ``retry``."""

    def __init__(self, api: EdgeApiClient, at_once: int = 16) -> None:
        self.api = api
        self.at_once = at_once
        self.batched = True

    async def upload(self, jobs: list[JobUploads]) -> None:
        jobs = [j for j in jobs if j.files]
        if not jobs:
            return
        uploads = await self._urls(jobs)
        limit = asyncio.Semaphore(self.at_once)

        async def put(job: JobUploads, upload: PresignedUpload) -> ArtifactConfirm | None:
            artifact = next((f for f in job.files if f.kind == upload.kind), None)
            if artifact is None or job.retry:
                return None
            async with limit:
                try:
                    data = await asyncio.to_thread(_read, job.paths, artifact)
                    await self.api.upload(upload.url, data)
                except EdgeApiError as exc:
                    log.warning("job %s: artifact not stored: %s", job.paths.job_id, exc)
                    return None
                except (OSError, PayloadFileError) as exc:
                    log.warning("job %s: cannot read an artifact: %s", job.paths.job_id, exc)
                    return None
                except ApiUnavailableError as exc:
                    log.warning("job %s: store unreachable: %s", job.paths.job_id, exc)
                    job.retry = True
                    return None
            return ArtifactConfirm(
                generation=job.generation,
                kind=upload.kind,
                key=upload.key,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )

        todo = [(job, upload) for job, found in zip(jobs, uploads, strict=True) for upload in found]
        confirms = await asyncio.gather(*(put(job, upload) for job, upload in todo))
        sent = [
            (job, confirm)
            for (job, _), confirm in zip(todo, confirms, strict=True)
            if confirm is not None and not job.retry
        ]
        for (job, confirm), ok in zip(sent, await self._confirm(sent), strict=True):
            if ok:
                job.stored.append(confirm.kind)

    async def _urls(self, jobs: list[JobUploads]) -> list[list[PresignedUpload]]:
        found: list[list[PresignedUpload]] = []
        if self.batched:
            asked = [
                JobArtifactUrls(
                    job_id=j.paths.job_id,
                    generation=j.generation,
                    kinds=list(dict.fromkeys(f.kind for f in j.files)),
                )
                for j in jobs
            ]
            for start in range(0, len(asked), MAX_REPORTS):
                chunk = asked[start : start + MAX_REPORTS]
                try:
                    reply = await self.api.artifact_url_batch(ArtifactUrlBatch(jobs=chunk))
                except EdgeApiError as exc:
                    self._refused(exc, "artifact URLs")
                    break
                for item, answer in zip(chunk, reply.replies, strict=False):
                    if answer.detail:
                        log.warning("job %s: artifacts not stored: %s", item.job_id, answer.detail)
                    found.append(answer.uploads)
                if len(reply.replies) != len(chunk):
                    break
        for job in jobs[len(found) :]:
            request = ArtifactUrlRequest(
                generation=job.generation, kinds=list(dict.fromkeys(f.kind for f in job.files))
            )
            try:
                found.append((await self.api.artifact_urls(job.paths.job_id, request)).uploads)
            except EdgeApiError as exc:
                log.warning("job %s: artifacts not stored: %s", job.paths.job_id, exc)
                found.append([])
        return found

    async def _confirm(self, sent: list[tuple[JobUploads, ArtifactConfirm]]) -> list[bool]:
        done: list[bool] = []
        if self.batched and sent:
            items = [
                JobArtifactConfirm(job_id=job.paths.job_id, **confirm.model_dump())
                for job, confirm in sent
            ]
            for start in range(0, len(items), 3 * MAX_REPORTS):
                chunk = items[start : start + 3 * MAX_REPORTS]
                try:
                    reply = await self.api.confirm_artifact_batch(
                        ArtifactConfirmBatch(confirms=chunk)
                    )
                except EdgeApiError as exc:
                    self._refused(exc, "artifact confirms")
                    break
                for item, answer in zip(chunk, reply.replies, strict=False):
                    if answer.artifact_id is None:
                        log.warning("job %s: artifact not stored: %s", item.job_id, answer.detail)
                    done.append(answer.artifact_id is not None)
                if len(reply.replies) != len(chunk):
                    break
        for job, confirm in sent[len(done) :]:
            try:
                await self.api.confirm_artifact(job.paths.job_id, confirm)
                done.append(True)
            except EdgeApiError as exc:
                log.warning("job %s: artifact not stored: %s", job.paths.job_id, exc)
                done.append(False)
        return done

    def _refused(self, exc: EdgeApiError, what: str) -> None:
        if exc.status in (404, 405):
            log.info("the api has no batched %s; sending them one by one", what)
            self.batched = False
        else:
            log.warning("batched %s refused (%s); sending them one by one", what, exc)
