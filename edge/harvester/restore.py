"""Bringing a point's latest checkpoint back before its next job runs (staging side).

The job spec names the checkpoint by a download URL with its size and sha256. The
harvester downloads it on the login node and checks both before the job is staged; in
the job directory it is then extracted into the work directory, or, if the task sets
checkPointToLoad, placed there as a tarball under that name for the payload to open.
A checkpoint that cannot be fetched, verified or safely extracted fails the staging
with a message saying so (a retry then gets it again).
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from pathlib import Path

from edge.fsproto import JobPaths, write_bytes_atomic
from edge.harvester.api import ApiUnavailableError, EdgeApiClient, EdgeApiError
from edge.harvester.safetar import UnsafeArchiveError, safe_extract
from shared.edge_api import JobSpec

log = logging.getLogger(__name__)


class RestoreError(ValueError):
    """The checkpoint cannot be restored; the message is for the user."""


def verify(data: bytes, size: int, sha256: str) -> None:
    if len(data) != size:
        raise RestoreError(f"the checkpoint download has {len(data)} bytes, {size} were expected")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RestoreError("the checkpoint download does not match its sha256")


async def fetch_checkpoint(api: EdgeApiClient, root: Path, spec: JobSpec) -> bytes | None:
    """The verified checkpoint of ``spec``, or None when there is none to restore (no
    checkpoint, or a job directory adopted as it is)."""
    if spec.checkpoint is None or spec.checkpoint_config is None:
        return None
    paths = JobPaths.under(root, spec.job_id)
    if paths.dir.exists() and not paths.reported.exists():
        return None  # the same job leased again: its work directory is already there
    try:
        data = await api.download(spec.checkpoint.url)
    except (EdgeApiError, ApiUnavailableError) as exc:
        raise RestoreError(f"the checkpoint could not be downloaded: {exc}") from exc
    verify(data, spec.checkpoint.size, spec.checkpoint.sha256)
    log.info("job %s: checkpoint of %d bytes downloaded", spec.job_id, len(data))
    return data


def restore_into(work: Path, data: bytes, load_as: str | None) -> None:
    """Extract ``data`` into ``work``, or write it as ``work/<load_as>``."""
    if load_as is not None:
        target = work / load_as
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)
        return
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            safe_extract(archive, work)
    except UnsafeArchiveError as exc:
        raise RestoreError(str(exc)) from exc
    except (tarfile.TarError, EOFError) as exc:
        raise RestoreError(f"the checkpoint is not a readable tarball: {exc}") from exc
