"""Reporting jobs' ends to the api exactly once.

Order matters for restarts: for each job the newest checkpoint snapshot and the
artifacts first (what is stored is recorded in ``harvester.json``, so a restart does
not upload it twice), then the terminal event, then ``reported.json``. A harvester
killed before ``reported.json`` exists reports the job again after its restart, which
the api answers "already recorded" without counting anything again; once it exists,
the job is never reported again.

The jobs a scan finds ended are reported together (:class:`Reporter`): one request
for all their artifacts' upload URLs, the uploads concurrently (at most
:data:`UPLOADS_AT_ONCE` at a time), one request confirming them, then every terminal
event in one request (``POST /edge/v1/sites/{site}/reports``), and each job's
``reported.json`` written once the reply says what became of it. An api without the
batched calls answers 404 or 405: from then on they go one request per job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from edge.documents import NodeStatus, ReportRecord
from edge.fsproto import JobPaths, tail_text, write_json_atomic
from edge.harvester.api import ApiUnavailableError, EdgeApiClient, EdgeApiError
from edge.harvester.artifacts import ArtifactUploader, JobUploads, artifact_files
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
from shared.edge_api import MAX_REPORTS, JobEvent, JobSpec, ReportBatch, SiteJobReport

log = logging.getLogger(__name__)

RETRY_LATER_STATUSES = frozenset({401, 408})
"""4xx answers that may change without the job changing (a token being rotated)."""
NO_BATCH_STATUSES = frozenset({404, 405})
"""What an api without the batched call answers it."""
UPLOADS_AT_ONCE = 16
"""Jobs whose artifacts are uploaded at the same time while a scan's reports are made."""
BATCH_BYTES = 2_000_000
"""Largest body of one batch of reports (the api refuses 8 MB by default); a scan's
reports beyond it go in further requests."""


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


@dataclass
class Ended:
    """A job to report, with what became of it."""

    job: TrackedJob
    outcome: Outcome
    host: str = ""


Answer = tuple[bool, str]
"""What the api said of a terminal event: accepted, and its detail."""


async def prepare_uploads(
    api: EdgeApiClient, ended: Ended, reader: PayloadReader | None = None
) -> JobUploads:
    """Upload the job's last checkpoint snapshot (once: what is stored is kept in
    ``harvester.json``); its artifact files not stored yet. ApiUnavailableError
    propagates."""
    job, outcome = ended.job, ended.outcome
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
    return JobUploads(job.paths, job.generation, pending)


def terminal_event(ended: Ended) -> JobEvent:
    return JobEvent(
        kind=ended.outcome.kind,
        generation=ended.job.generation,
        host=ended.host,
        results=ended.outcome.results,
        reason=ended.outcome.reason,
    )


async def send_report(api: EdgeApiClient, job_id: str, event: JobEvent) -> Answer | None:
    """Send one terminal event on its own; None when it must be sent again later (the
    api refused it for now). ApiUnavailableError propagates."""
    try:
        reply = await api.job_event(job_id, event)
    except EdgeApiError as exc:
        if exc.status in RETRY_LATER_STATUSES:
            log.warning("job %s: %s event refused for now: %s", job_id, event.kind, exc)
            return None
        return False, exc.detail
    return reply.accepted, reply.detail


def write_reported(ended: Ended, event: JobEvent, answer: Answer) -> None:
    """Write the job's ``reported.json``: it is never reported again. Blocking."""
    job, outcome = ended.job, ended.outcome
    accepted, detail = answer
    record = ReportRecord(
        kind=event.kind,
        generation=job.generation,
        accepted=accepted,
        reason=outcome.reason,
        detail=detail,
        reported_at=utcnow(),
    )
    write_json_atomic(job.paths.reported, record.model_dump(mode="json"))
    log.info(
        "job %s reported %s (%s)%s",
        job.job_id,
        event.kind,
        "accepted" if accepted else "not accepted",
        f": {outcome.reason.splitlines()[0]}" if outcome.reason else "",
    )


def batches(reports: Sequence[SiteJobReport]) -> list[list[SiteJobReport]]:
    """``reports`` in order, cut into bodies within :data:`MAX_REPORTS` and
    :data:`BATCH_BYTES` (a report larger than that alone goes in a batch of its own)."""
    out: list[list[SiteJobReport]] = []
    size = 0
    for item in reports:
        length = len(item.model_dump_json()) + 1
        if not out or len(out[-1]) >= MAX_REPORTS or size + length > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(item)
        size += length
    return out


class Reporter:
    """Reports ended jobs: uploads first, then the events in as few requests as the
    api takes, then ``reported.json`` per job."""

    def __init__(self, api: EdgeApiClient, reader: PayloadReader | None = None) -> None:
        self.api = api
        self.reader = reader
        self.uploader = ArtifactUploader(api, UPLOADS_AT_ONCE)
        self.batched = True
        """Send the events in one request, until an api says it cannot."""

    async def report(self, ended: Sequence[Ended]) -> list[Ended]:
        """Report ``ended``; those now reported (``reported.json`` written). The others
        are reported again later: the api or the store could not be reached while
        their uploads ran, or the api answered something that may change.
        ApiUnavailableError from the api propagates, with no event sent or nothing
        recorded (all are reported again later)."""
        limit = asyncio.Semaphore(UPLOADS_AT_ONCE)

        async def prepare(item: Ended) -> JobUploads:
            async with limit:
                return await prepare_uploads(self.api, item, self.reader)

        prepared = await asyncio.gather(*(prepare(e) for e in ended), return_exceptions=True)
        ready: list[tuple[Ended, JobUploads]] = []
        for item, uploads in zip(ended, prepared, strict=True):
            if isinstance(uploads, JobUploads):
                ready.append((item, uploads))
            elif isinstance(uploads, ApiUnavailableError):
                log.warning("job %s: not reported yet: %s", item.job.job_id, uploads)
            elif isinstance(uploads, Exception):
                log.error("job %s: report failed", item.job.job_id, exc_info=uploads)
            else:
                raise uploads
        await self.uploader.upload([u for _, u in ready])
        stored = [(item.job, u.stored) for item, u in ready if u.stored]
        if stored:
            await asyncio.to_thread(_keep_uploaded, stored)
        events = [(item, terminal_event(item)) for item, u in ready if not u.retry]
        if not events:
            return []
        answers = await self._send([(item.job.job_id, event) for item, event in events])
        done = [
            (item, event, answer)
            for (item, event), answer in zip(events, answers, strict=True)
            if answer is not None
        ]
        await asyncio.to_thread(_write_all, done)
        return [item for item, _, _ in done]

    async def _send(self, events: list[tuple[str, JobEvent]]) -> list[Answer | None]:
        answers: list[Answer | None] = []
        if self.batched:
            reports = [SiteJobReport.of(job_id, event) for job_id, event in events]
            for chunk in batches(reports):
                try:
                    reply = await self.api.reports(ReportBatch(reports=chunk))
                except EdgeApiError as exc:
                    if exc.status in NO_BATCH_STATUSES:
                        log.info("the api has no batched reports; sending them one by one")
                        self.batched = False
                    elif exc.status in RETRY_LATER_STATUSES:
                        log.warning("reports refused for now: %s", exc)
                        return answers + [None] * (len(events) - len(answers))
                    else:  # each event alone gets its own answer
                        log.warning("reports refused (%s); sending them one by one", exc)
                    break
                if len(reply.replies) != len(chunk):
                    log.error(
                        "the api answered %d of %d reports; the rest are sent again later",
                        len(reply.replies),
                        len(chunk),
                    )
                    return answers + [None] * (len(events) - len(answers))
                answers += [(r.accepted, r.detail) for r in reply.replies]
        for job_id, event in events[len(answers) :]:
            answers.append(await send_report(self.api, job_id, event))
        return answers


def _keep_uploaded(stored: list[tuple[TrackedJob, list[str]]]) -> None:
    for job, kinds in stored:
        job.record.uploaded.extend(kinds)
        job.save_record()


def _write_all(done: list[tuple[Ended, JobEvent, Answer]]) -> None:
    for item, event, answer in done:
        write_reported(item, event, answer)
