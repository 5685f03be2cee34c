"""Relaying a payload's intermediate values to the api, one scan at a time.

The payload appends JSON lines ``{"step": 3, "value": 0.41}`` to a file in its work
directory (``intermediate.jsonl`` unless the task names another). Each scan the
harvester reads the complete lines written since its last read (a line still being
written waits for its newline), skips lines that are not such an object, and sends the
rest under the job's lease generation. The read offset is kept in memory only: after a
restart the file is sent again from the start, which the api ignores step by step.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edge.harvester.api import EdgeApiClient, EdgeApiError
from edge.harvester.jobs import TrackedJob
from edge.harvester.payloadfile import (
    PayloadFileError,
    PayloadReader,
    decode,
    open_regular,
    parse_json,
)
from shared.edge_api import IntermediateReport, IntermediateValue

log = logging.getLogger(__name__)

MAX_VALUES = 1000
"""Values sent per job and scan; the rest follow on the next scans."""
MAX_READ = 1 << 20
"""Bytes read per job and scan."""
DEFAULT_MAX_DEPTH = 64


@dataclass(frozen=True)
class NewLines:
    values: list[IntermediateValue]
    offset: int
    """Where the next read starts: after the last complete line consumed."""
    bad: int
    """Lines skipped because they are not a ``{"step", "value"}`` object."""


def read_new_lines(
    base: Path, relative: str, offset: int, max_depth: int = DEFAULT_MAX_DEPTH, name: str = ""
) -> NewLines:
    """The complete lines of ``base/relative`` after byte ``offset``, at most
    MAX_VALUES. PayloadFileError if the file is not a regular file inside ``base``; a
    line that is not a bounded, finite JSON object is skipped."""
    name = name or relative
    fd = open_regular(base, relative, name)
    if fd is None:
        return NewLines([], offset, 0)
    try:
        data = os.pread(fd, MAX_READ, offset)
    finally:
        os.close(fd)
    if len(data) == MAX_READ and b"\n" not in data:
        raise PayloadFileError(f"{name} has a line longer than {MAX_READ} bytes")
    values: list[IntermediateValue] = []
    bad = 0
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n") or len(values) == MAX_VALUES:
            break
        consumed += len(line)
        if not line.strip():
            continue
        try:
            doc = parse_json(name, decode(name, line), max_depth)
            values.append(IntermediateValue.model_validate(doc))
        except (PayloadFileError, ValidationError):
            bad += 1
    return NewLines(values, offset + consumed, bad)


class CurveRelay:
    """The harvester's relay; ``relay`` once per job and scan, ``forget`` at its end."""

    def __init__(self, api: EdgeApiClient, reader: PayloadReader) -> None:
        self.api = api
        self.reader = reader
        self._offsets: dict[str, int] = {}

    def forget(self, job_id: str) -> None:
        self._offsets.pop(job_id, None)

    async def relay(self, job: TrackedJob) -> str:
        """Send the job's new values; the reason to stop the job if the api gives one
        (the point was pruned), else "". An unreachable api raises
        ApiUnavailableError and the same lines are read again next scan; a file that
        cannot be read safely raises PayloadFileError (the job fails with it)."""
        name = job.doc.spec.files.intermediate
        new = await self.reader.call(
            name,
            read_new_lines,
            job.paths.dir,
            f"{job.paths.work.name}/{name}",
            self._offsets.get(job.job_id, 0),
            self.reader.limits.max_json_depth,
            name,
        )
        if new.bad:
            log.warning("job %s: %d malformed line(s) in %s skipped", job.job_id, new.bad, name)
        if not new.values:
            self._offsets[job.job_id] = new.offset
            return ""
        report = IntermediateReport(generation=job.generation, values=new.values)
        try:
            reply = await self.api.intermediate(job.job_id, report)
        except EdgeApiError as exc:
            log.warning("job %s: intermediate values refused: %s", job.job_id, exc)
            self._offsets[job.job_id] = new.offset
            return ""
        self._offsets[job.job_id] = new.offset
        if reply.kill:
            return reply.detail or "the central service asked to stop the job"
        return ""
