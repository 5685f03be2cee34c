"""File artifact store: objects are plain files under a root directory (``file:///abs/path``).

This is the embedded default's store: no server to run, and the files can be browsed
directly (``<root>/<owner>/<task>/...``). Writes go to a temporary file in the target
directory, are fsynced, then renamed over the key, so a reader never sees half an object
and a crash leaves at most a hidden ``.*.tmp`` file behind.

Presigned URLs point at the api's ``/artifacts/{key}`` route
(``services/api/routers/artifacts.py``) and carry an HMAC-SHA256 signature over the
method, the key and the expiry time, made with ``signing_key``; :meth:`verify` checks
them. So the edge harvester moves bytes the same way as with S3.

Supports everything in the port, for one host (or a shared filesystem with atomic
rename). Does not support: a key that is both an object and the directory of another
key (``a`` and ``a/b``; S3 allows it, this store raises ValueError), key segments that
start with ``.`` (reserved for temporary files; rejected for every store), streaming
bodies, or pruning directories left empty by deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from stat import S_ISREG
from urllib.parse import quote, unquote, urlencode, urlsplit

from shared.artifacts.port import ArtifactNotFoundError, ObjectInfo

MAX_KEY_BYTES = 1024
MAX_PRESIGN = timedelta(days=7)
SIGNED_METHODS = frozenset({"GET", "PUT"})


def check_key(key: str) -> None:
    """Raise ValueError unless ``key`` is a safe relative '/'-separated path.

    Shared by every adapter, so a key valid for one store is valid for all.
    """
    if not key:
        raise ValueError("artifact key is empty")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"artifact key is longer than {MAX_KEY_BYTES} bytes")
    if "\\" in key:
        raise ValueError(f"artifact key {key!r} contains a backslash; use '/'")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key):
        raise ValueError(f"artifact key {key!r} contains a control character")
    if key.startswith("/"):
        raise ValueError(f"artifact key {key!r} is absolute; keys are relative paths")
    for segment in key.split("/"):
        if not segment:
            raise ValueError(f"artifact key {key!r} has an empty segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise ValueError(f"artifact key {key!r} contains a {segment!r} segment")
        if segment.startswith("."):
            raise ValueError(f"artifact key {key!r} has a segment starting with '.' (reserved)")


def check_prefix(prefix: str) -> None:
    """Like :func:`check_key`, but ``""`` and a trailing '/' are allowed."""
    if prefix:
        check_key(prefix.removesuffix("/"))


class FileArtifactStore:
    """Objects under ``root``; presigned URLs under ``public_url``, signed with ``signing_key``.

    ``public_url`` and ``signing_key`` are only needed to presign (and verify); a store
    used for direct reads and writes can leave them empty.
    """

    def __init__(self, root: Path | str, *, public_url: str = "", signing_key: bytes = b"") -> None:
        self._root = Path(root)
        if not self._root.is_absolute():
            raise ValueError(f"file artifact root must be absolute, got {str(root)!r}")
        self._public_url = public_url.rstrip("/")
        self._signing_key = signing_key

    @classmethod
    def from_url(
        cls, url: str, *, public_url: str = "", signing_key: bytes = b""
    ) -> FileArtifactStore:
        parts = urlsplit(url)
        if parts.scheme != "file":
            raise ValueError(f"not a file:// URL: {parts.scheme}://...")
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL must name a local path (file:///abs/path), got {url!r}")
        if parts.query:
            raise ValueError(f"file URL takes no parameters, got {parts.query!r}")
        return cls(unquote(parts.path), public_url=public_url, signing_key=signing_key)

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, key: str) -> Path:
        check_key(key)
        return self._root.joinpath(*key.split("/"))

    async def ensure_ready(self) -> None:
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)

    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        path = self._path(key)
        await asyncio.to_thread(self._write, key, path, data)
        return ObjectInfo(key=key, size=len(data))

    @staticmethod
    def _write(key: str, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise IsADirectoryError(path)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise ValueError(
                f"artifact key {key!r} clashes with another key: one would be the other's directory"
            ) from exc
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            with temp.open("xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    async def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFoundError(key) from None

    async def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            found = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not S_ISREG(found.st_mode):
            return None
        return ObjectInfo(key=key, size=found.st_size)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            await asyncio.to_thread(path.unlink)

    def _list(self, prefix: str) -> list[ObjectInfo]:
        directory, _, _ = prefix.rpartition("/")
        start = self._root.joinpath(*directory.split("/")) if directory else self._root
        found: list[ObjectInfo] = []
        for current, dirs, files in os.walk(start):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            base = Path(current).relative_to(self._root).as_posix()
            for name in files:
                if name.startswith("."):
                    continue
                key = name if base == "." else f"{base}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    size = os.stat(os.path.join(current, name)).st_size
                except FileNotFoundError:
                    continue  # deleted while we walked
                found.append(ObjectInfo(key=key, size=size))
        return sorted(found, key=lambda info: info.key)

    async def list(self, prefix: str) -> list[ObjectInfo]:
        check_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    def sign(self, method: str, key: str, expires_at: int) -> str:
        """Hex HMAC-SHA256 of ``method``, ``key`` and the expiry (unix seconds)."""
        if not self._signing_key:
            raise ValueError("file artifact store has no signing key; cannot sign URLs")
        message = f"{method}\n{key}\n{expires_at}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def verify(self, method: str, key: str, expires: int, sig: str) -> bool:
        """True if ``sig`` was made by :meth:`sign` for these values and has not expired."""
        if not self._signing_key or method not in SIGNED_METHODS or expires < time.time():
            return False
        try:
            check_key(key)
        except ValueError:
            return False
        expected = self.sign(method, key, expires)
        return hmac.compare_digest(expected.encode(), sig.encode())

    def _presign(self, method: str, key: str, expires: timedelta) -> str:
        check_key(key)
        if not self._public_url:
            raise ValueError("file artifact store has no public_url; cannot presign URLs")
        if not timedelta(seconds=1) <= expires <= MAX_PRESIGN:
            raise ValueError("expires must be between 1 second and 7 days")
        expires_at = math.ceil(time.time() + expires.total_seconds())
        query = urlencode(
            {"method": method, "expires": expires_at, "sig": self.sign(method, key, expires_at)}
        )
        return f"{self._public_url}/artifacts/{quote(key, safe='/')}?{query}"

    def presign_put(self, key: str, expires: timedelta) -> str:
        return self._presign("PUT", key, expires)

    def presign_get(self, key: str, expires: timedelta) -> str:
        return self._presign("GET", key, expires)
