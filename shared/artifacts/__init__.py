"""Artifact store: a port and adapters chosen by URL scheme (``s3://``, ``file://``)."""

from __future__ import annotations

from shared.artifacts.port import ArtifactNotFoundError, ArtifactStore, ObjectInfo

SCHEMES = ("s3", "file")
"""The URL schemes :func:`open_artifacts` has an adapter for."""


def open_artifacts(url: str, *, public_url: str = "", signing_key: bytes = b"") -> ArtifactStore:
    """Build (not yet check) the adapter for ``url``; call ``ensure_ready`` before use.

    ``public_url`` (the api's base URL) and ``signing_key`` only matter for ``file://``,
    whose presigned URLs are served and verified by the api; S3 signs with its own
    credentials.
    """
    scheme = url.split(":", 1)[0]
    if scheme == "s3":
        from shared.artifacts.s3 import S3ArtifactStore

        return S3ArtifactStore.from_url(url)
    if scheme == "file":
        from shared.artifacts.file import FileArtifactStore

        return FileArtifactStore.from_url(url, public_url=public_url, signing_key=signing_key)
    raise ValueError(f"unsupported artifacts URL scheme {scheme!r}: use s3:// or file://")


__all__ = ["ArtifactNotFoundError", "ArtifactStore", "ObjectInfo", "open_artifacts"]
