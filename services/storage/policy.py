"""Where artifacts live and how long upload links stay valid (pure, no I/O).

Keys start with the owner so that per-user MinIO policies can confine the MinIO
browser to a user's own prefix. The metrics tarball keeps phpo's name,
``<segment>.<task>.<point>.metrics.tgz`` (segment prefix only for segmented tasks).
"""

from __future__ import annotations

from datetime import timedelta

UPLOAD_EXPIRY = timedelta(hours=1)
DOWNLOAD_EXPIRY = timedelta(hours=1)
MAX_CHECKPOINT_BYTES = 100 * 1024 * 1024


def point_stem(task_id: str, segment: str, point_index: int, *, segmented: bool) -> str:
    stem = f"{task_id}.{point_index}"
    return f"{segment}.{stem}" if segmented else stem


def artifact_key(
    owner: str,
    task_id: str,
    job_id: str,
    kind: str,
    *,
    segment: str,
    point_index: int,
    segmented: bool,
) -> str:
    stem = point_stem(task_id, segment, point_index, segmented=segmented)
    if kind == "metrics":
        name = f"{stem}.metrics.tgz"
    elif kind == "meta":
        name = f"{stem}.meta.json"
    elif kind == "log":
        name = f"jobs/{job_id}/payload.log"
    else:
        raise ValueError(f"unknown artifact kind {kind!r}")
    return f"{owner}/{task_id}/{name}"


def checkpoint_key(owner: str, task_id: str, job_id: str, seq: int) -> str:
    """One object per snapshot, so an upload never overwrites a verified checkpoint."""
    return f"{owner}/{task_id}/checkpoints/{job_id}.{seq:06d}.tar.gz"


def owns_key(owner: str, task_id: str, key: str) -> bool:
    return key.startswith(f"{owner}/{task_id}/") and ".." not in key.split("/")
