"""``/artifacts/{key}``: the HTTP side of the file artifact store's presigned URLs.

Only mounted when the store is ``file://`` (with S3 the harvester talks to the S3 server
directly). A request is allowed by its signature alone, which binds the HTTP method, the
key and the expiry time, so no bearer token is needed: this is what lets the edge
harvester upload and download without store credentials. Bodies are held in memory
(checkpoints are capped at 100 MB), so the upload size limit is enforced while reading.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from shared.artifacts import ArtifactNotFoundError, ObjectInfo
from shared.artifacts.file import FileArtifactStore

DEFAULT_MAX_BODY_BYTES = 110 * 1024 * 1024

Param = Annotated[str, Query()]


def _whole_number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def build_router(
    store: FileArtifactStore, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> APIRouter:
    router = APIRouter(tags=["artifacts"])

    def authorize(request: Request, key: str, method: str, expires: str, sig: str) -> None:
        expires_at = _whole_number(expires)
        if (
            method != request.method
            or expires_at is None
            or not store.verify(method, key, expires_at, sig)
        ):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid or expired signature")

    def too_large() -> HTTPException:
        return HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"body larger than {max_body_bytes} bytes"
        )

    @router.put("/artifacts/{key:path}")
    async def put_artifact(
        key: str, request: Request, method: Param = "", expires: Param = "", sig: Param = ""
    ) -> ObjectInfo:
        authorize(request, key, method, expires, sig)
        declared = _whole_number(request.headers.get("content-length", ""))
        if declared is not None and declared > max_body_bytes:
            raise too_large()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise too_large()
        return await store.put_bytes(key, bytes(body))

    @router.get("/artifacts/{key:path}")
    async def get_artifact(
        key: str, request: Request, method: Param = "", expires: Param = "", sig: Param = ""
    ) -> Response:
        authorize(request, key, method, expires, sig)
        try:
            data = await store.get_bytes(key)
        except ArtifactNotFoundError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact") from None
        return Response(data, media_type="application/octet-stream")

    return router
