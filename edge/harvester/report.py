"""Reporting a job's end to the api exactly once.

Order matters for restarts: the newest checkpoint snapshot and the artifacts first
(what is stored is recorded in ``harvester.json``, so a restart does not upload it
twice), then the terminal event, then ``reported.json``. A harvester killed before
``reported.json`` exists reports the job again after its restart, which the api
absorbs because results are keyed by (job, attempt, lease generation); once it
exists, the job is never reported again.
"""

from __future__ import annotations

import asyncio
import logging

from edge.documents import NodeStatus, ReportRecord
from edge.fsproto import JobPaths, tail_text, write_json_atomic
from edge.harvester.api import EdgeApiClient, EdgeApiError
from edge.harvester.artifacts import artifact_files, upload_artifacts
from edge.harvester.checkpoints import upload_new_snapshot
from edge.harvester.jobs import TrackedJob
from edge.harvester.outcome import Outcome, PointFiles, decide
from edge.harvester.payloadfile import (
    PayloadFileError,
    PayloadFileLimits,
    PayloadReader,
    read_text,
)
from shared.clock import utcnow
from shared.edge_api import JobEvent, JobSpec

log = logging.getLogger(__name__)

RETRY_LATER_STATUSES = frozenset({401, 408})
"""4xx answers that may change without the job changing (a token being rotated)."""


def read_point_files(
    paths: JobPaths, spec: JobSpec, status: NodeStatus, limits: PayloadFileLimits
) -> list[PointFiles]:
    runs = {run.index: run for run in status.points}
    files: list[PointFiles] = []
    name = spec.files.output
    for index in range(len(spec.points)):
        run = runs.get(index)
        output: str | None = None
        error: str | None = None
        try:
            output = read_text(paths.dir, f"points/{index}/{name}", limits.max_json_bytes, name)
        except PayloadFileError as exc:
            error = str(exc)
        log_tail = tail_text(paths.payload_log, start=run.log_start, end=run.log_end) if run else ""
        files.append(PointFiles(run=run, output_text=output, log_tail=log_tail, output_error=error))
    return files


def decide_from_disk(job: TrackedJob, status: NodeStatus, limits: PayloadFileLimits) -> Outcome:
    """The job's outcome from its files (blocking: call it off the event loop)."""
    spec = job.doc.spec
    _, refused = artifact_files(job.paths, spec, limits)
    files = read_point_files(job.paths, spec, status, limits)
    return decide(spec, status, files, limits.max_json_depth, refused)


async def report_terminal(
    api: EdgeApiClient,
    job: TrackedJob,
    outcome: Outcome,
    host: str = "",
    reader: PayloadReader | None = None,
) -> bool:
    """Upload artifacts, send the terminal event and write ``reported.json``.

    Returns False when the job must be reported again later (the api could not be
    reached or answered something that may change); ApiUnavailableError propagates.
    """
    spec = job.doc.spec
    final = spec.checkpoint_config is not None and spec.checkpoint_config.final
    if outcome.kind != "finished" or final:  # what a retry, or a later point, resumes from
        try:
            await upload_new_snapshot(api, job, reader)
        except PayloadFileError as exc:  # the outcome stands; the snapshot is not kept
            log.warning("job %s: checkpoint snapshot refused: %s", job.job_id, exc)
    limits = reader.limits if reader is not None else PayloadFileLimits()
    found, refused = await asyncio.to_thread(artifact_files, job.paths, spec, limits)
    if refused:  # the reason of the outcome too, when it was decided from the files
        log.warning("job %s: artifact not uploaded: %s", job.job_id, refused)
    pending = [f for f in found if f.kind not in job.record.uploaded]
    if pending:
        stored = await upload_artifacts(api, job.paths, job.generation, pending)
        if stored:
            job.record.uploaded.extend(stored)
            await asyncio.to_thread(job.save_record)
    event = JobEvent(
        kind=outcome.kind,
        generation=job.generation,
        host=host,
        results=outcome.results,
        reason=outcome.reason,
    )
    try:
        reply = await api.job_event(job.job_id, event)
        accepted, detail = reply.accepted, reply.detail
    except EdgeApiError as exc:
        if exc.status in RETRY_LATER_STATUSES:
            log.warning("job %s: %s event refused for now: %s", job.job_id, event.kind, exc)
            return False
        accepted, detail = False, exc.detail
    record = ReportRecord(
        kind=event.kind,
        generation=job.generation,
        accepted=accepted,
        reason=outcome.reason,
        detail=detail,
        reported_at=utcnow(),
    )
    await asyncio.to_thread(write_json_atomic, job.paths.reported, record.model_dump(mode="json"))
    log.info(
        "job %s reported %s (%s)%s",
        job.job_id,
        event.kind,
        "accepted" if accepted else "not accepted",
        f": {outcome.reason.splitlines()[0]}" if outcome.reason else "",
    )
    return True
