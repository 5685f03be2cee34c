"""The artifact-store port: metrics tarballs, checkpoints, logs and task files.

Keys are '/'-separated paths, always prefixed by the owner (``<owner>/<task>/...``).
Presigned URLs let the edge harvester move bytes without holding store credentials:
for ``s3://`` they are S3 presigned URLs; for ``file://`` they point at the api's
``/artifacts`` route, signed with an HMAC, so the embedded default works the same way.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from pydantic import BaseModel


class ObjectInfo(BaseModel):
    key: str
    size: int


class ArtifactNotFoundError(KeyError):
    """No object under this key."""


class ArtifactStore(Protocol):
    async def ensure_ready(self) -> None:
        """Create the bucket or directory if needed; idempotent."""

    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo: ...

    async def get_bytes(self, key: str) -> bytes:
        """Raises ArtifactNotFoundError when the key does not exist."""

    async def stat(self, key: str) -> ObjectInfo | None: ...

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is not an error."""

    async def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""

    def presign_put(self, key: str, expires: timedelta) -> str:
        """A URL to which an HTTP PUT of the body stores the object."""

    def presign_get(self, key: str, expires: timedelta) -> str:
        """A URL from which an HTTP GET returns the object."""
