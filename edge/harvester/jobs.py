"""The harvester's view of its jobs, rebuilt from the job directories at every start.

A job is *active* from staging until its terminal event was answered and
``reported.json`` written. Nothing about a job is kept only in memory except rate
limits and counters that are safe to lose (a restart merely sends a heartbeat early).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge.documents import HarvesterRecord, JobDocument, NodeStatus
from edge.fsproto import JobPaths, jobs_root, read_json, read_text, write_json_atomic
from edge.harvester import payloadfile
from edge.harvester.payloadfile import PayloadFileLimits, PayloadJsonSyntaxError
from edge.harvester.staging import ATTIC, STAGING_PREFIX

log = logging.getLogger(__name__)


@dataclass
class TrackedJob:
    paths: JobPaths
    doc: JobDocument
    record: HarvesterRecord
    last_beat: float = float("-inf")
    """monotonic time of the last heartbeat event sent for it (this process only)."""
    done_polls: int = 0
    """consecutive scans in which the batch system said done but status.json was not."""

    @property
    def job_id(self) -> str:
        return self.doc.spec.job_id

    @property
    def generation(self) -> int:
        return self.doc.spec.generation

    def save_record(self) -> None:
        write_json_atomic(self.paths.harvester, self.record.model_dump(mode="json"))

    def read_status(self, limits: PayloadFileLimits | None = None) -> NodeStatus | None:
        """The node agent's status, or None before it wrote one (or mid-write).

        The payload may have replaced the file (nothing stops it on the ``process``
        runtime), so it is read as a payload file: PayloadFileError if it is not a
        regular file, too big, not UTF-8 or not bounded, finite JSON."""
        try:
            raw = payloadfile.read_json(
                self.paths.dir, self.paths.status.name, limits or PayloadFileLimits()
            )
        except PayloadJsonSyntaxError:
            log.warning("job %s: status.json is not JSON (yet), ignored", self.job_id)
            return None
        if raw is None:
            return None
        try:
            return NodeStatus.model_validate(raw)
        except ValidationError:
            log.warning("job %s: unreadable status.json ignored", self.job_id)
            return None


def load_job(paths: JobPaths) -> TrackedJob | None:
    """The job in ``paths``, or None if it is not a complete job directory."""
    text = read_text(paths.job_json)
    if text is None:
        return None
    try:
        doc = JobDocument.model_validate_json(text)
    except ValidationError as exc:
        log.error("job directory %s has an invalid job.json, ignored: %s", paths.dir, exc)
        return None
    raw = read_json(paths.harvester)
    try:
        record = HarvesterRecord.model_validate(raw) if raw is not None else HarvesterRecord()
    except ValidationError:
        record = HarvesterRecord()
    return TrackedJob(paths=paths, doc=doc, record=record)


def load_active_jobs(root: Path) -> dict[str, TrackedJob]:
    """Every staged job under ``root`` whose terminal event has not been answered."""
    directory = jobs_root(root)
    active: dict[str, TrackedJob] = {}
    if not directory.is_dir():
        return active
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith((STAGING_PREFIX, ATTIC, ".")) or not entry.is_dir():
            continue
        paths = JobPaths(entry)
        if paths.reported.exists():
            continue
        job = load_job(paths)
        if job is not None:
            active[job.job_id] = job
    return active
