"""S3 artifact store (MinIO in production, moto in tests), on the ``minio`` client.

URL: ``s3://ACCESS:SECRET@HOST:PORT/BUCKET?secure=false&region=us-east-1``.
``secure`` defaults to true and ``region`` to ``us-east-1``; credentials may be
percent-encoded. ``public_endpoint=HOST:PORT`` (or ``http[s]://HOST:PORT``) signs
presigned URLs for another name of the same server, for clients outside the network
the services use; all other calls still go to ``HOST:PORT``.

Supports one bucket per store (created by ``ensure_ready``), objects up to what one
``put_object`` call accepts (minio switches to multipart above 5 MiB by itself),
presigned PUT and GET URLs of up to 7 days (S3's limit), path-style addressing.
Does not support a key prefix inside the bucket, bucket policies or lifecycle rules
(``services/storage`` owns those), versioning, or streaming bodies: objects are read
and written whole, which suits checkpoints capped at 100 MB.

minio is synchronous, so every network call runs in ``asyncio.to_thread``. Presigning
makes no network call because the region is given to the client up front.
"""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

from minio import Minio
from minio.error import S3Error

from shared.artifacts.file import check_key, check_prefix
from shared.artifacts.port import ArtifactNotFoundError, ObjectInfo

_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "ResourceNotFound"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _flag(value: str, name: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"s3 URL: {name}={value!r} is not a boolean")


def _split_endpoint(value: str, secure: bool) -> tuple[str, bool]:
    """``host:port`` keeps ``secure``; ``http://host:port`` or ``https://...`` sets it."""
    if "://" not in value:
        return value, secure
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise ValueError(
            f"s3 URL: public_endpoint={value!r} must be HOST:PORT or http[s]://HOST:PORT"
        )
    return parts.netloc, parts.scheme == "https"


class S3ArtifactStore:
    """One bucket of an S3-compatible server. Build it with :meth:`from_url`."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        access_key: str,
        secret_key: str,
        secure: bool = True,
        region: str = "us-east-1",
        public_endpoint: str = "",
        public_secure: bool | None = None,
    ) -> None:
        self._bucket = bucket
        self._region = region
        self._client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        self._signer = self._client
        if public_endpoint:
            self._signer = Minio(
                public_endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure if public_secure is None else public_secure,
                region=region,
            )

    @classmethod
    def from_url(cls, url: str) -> S3ArtifactStore:
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ValueError(f"not an s3:// URL: {parts.scheme}://...")
        if not parts.hostname:
            raise ValueError("s3 URL: missing HOST[:PORT]")
        if not parts.username or parts.password is None:
            raise ValueError("s3 URL: credentials are required as s3://ACCESS:SECRET@HOST")
        bucket = parts.path.strip("/")
        if not bucket or "/" in bucket:
            raise ValueError(
                f"s3 URL: the path must be exactly one bucket name, got {parts.path!r}"
            )
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"secure", "region", "public_endpoint"}
        if unknown:
            raise ValueError(f"s3 URL: unknown parameters {sorted(unknown)}")
        secure = _flag(query.get("secure", "true"), "secure")
        endpoint = parts.netloc.rsplit("@", 1)[-1]
        public_endpoint, public_secure = _split_endpoint(query.get("public_endpoint", ""), secure)
        return cls(
            endpoint,
            bucket,
            access_key=unquote(parts.username),
            secret_key=unquote(parts.password),
            secure=secure,
            region=query.get("region", "us-east-1"),
            public_endpoint=public_endpoint,
            public_secure=public_secure,
        )

    async def ensure_ready(self) -> None:
        await asyncio.to_thread(self._ensure_bucket)

    def _ensure_bucket(self) -> None:
        if self._client.bucket_exists(self._bucket):
            return
        try:
            self._client.make_bucket(self._bucket, location=self._region)
        except S3Error as exc:
            # Another process created it between the check and the call.
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        check_key(key)
        await asyncio.to_thread(
            self._client.put_object, self._bucket, key, io.BytesIO(data), len(data)
        )
        return ObjectInfo(key=key, size=len(data))

    async def get_bytes(self, key: str) -> bytes:
        check_key(key)
        return await asyncio.to_thread(self._get, key)

    def _get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(self._bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise ArtifactNotFoundError(key) from None
            raise
        try:
            data: bytes = response.read()
        finally:
            response.close()
            response.release_conn()
        return data

    async def stat(self, key: str) -> ObjectInfo | None:
        check_key(key)
        return await asyncio.to_thread(self._stat, key)

    def _stat(self, key: str) -> ObjectInfo | None:
        try:
            found = self._client.stat_object(self._bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                return None
            raise
        return ObjectInfo(key=key, size=int(found.size or 0))

    async def delete(self, key: str) -> None:
        check_key(key)
        await asyncio.to_thread(self._client.remove_object, self._bucket, key)

    def _list(self, prefix: str) -> list[ObjectInfo]:
        found = self._client.list_objects(self._bucket, prefix=prefix or None, recursive=True)
        infos = [ObjectInfo(key=o.object_name, size=int(o.size or 0)) for o in found]
        return sorted(infos, key=lambda info: info.key)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        check_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    def presign_put(self, key: str, expires: timedelta) -> str:
        check_key(key)
        url: str = self._signer.presigned_put_object(self._bucket, key, expires=expires)
        return url

    def presign_get(self, key: str, expires: timedelta) -> str:
        check_key(key)
        url: str = self._signer.presigned_get_object(self._bucket, key, expires=expires)
        return url
