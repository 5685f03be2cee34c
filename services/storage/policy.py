"""Where artifacts live and how long upload links stay valid (pure, no I/O).

Keys start with the owner so that per-user MinIO policies (:func:`user_policy`) can
confine the MinIO browser to a user's own prefix. The metrics tarball keeps phpo's name,
``<segment>.<task>.<point>.metrics.tgz`` (segment prefix only for segmented tasks).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

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


OWNER_FOR_POLICY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
"""Owners whose prefix a policy can name exactly: no ``*``, ``?`` or ``$``, which IAM
policies read as wildcards and variables, and no ``/``."""


def user_policy_name(owner: str) -> str:
    return f"hpo-user-{owner}"


def user_policy(owner: str, bucket: str) -> dict[str, Any]:
    """The MinIO (IAM) policy that lets ``owner`` browse and download their own
    artifacts, ``<bucket>/<owner>/...``, and nothing else: no other user's prefix, no
    listing of the bucket's top level (which would show every user's name), no upload
    or delete (artifacts reach the store only through the service's presigned URLs,
    and leave it only by the service's retention)."""
    if not OWNER_FOR_POLICY.match(owner):
        raise ValueError(f"owner {owner!r} cannot be named exactly in a policy")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FindTheBucket",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListAllMyBuckets"],
                "Resource": [bucket_arn],
            },
            {
                "Sid": "ListOwnPrefix",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket_arn],
                "Condition": {"StringLike": {"s3:prefix": [f"{owner}/", f"{owner}/*"]}},
            },
            {
                "Sid": "ReadOwnObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"{bucket_arn}/{owner}/*"],
            },
        ],
    }
