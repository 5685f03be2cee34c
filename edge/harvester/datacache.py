"""The dataset cache: uploaded training files downloaded once per site, by content.

Compute nodes never download. Before a job that reads an uploaded dataset is staged,
the harvester makes sure each of its files is in this cache on the shared filesystem,
named by its sha256 (``<dir>/sha256/<hex>``), so every task and every job of the site
that reads the same bytes shares one copy. The job's work directory then gets a hard
link to it under the file's own name (:mod:`edge.harvester.datasets`).

**Verified.** A download is written under a temporary name, its size and sha256 are
checked against what the user declared at upload, and only then is it renamed into
place, read-only. A file already in the cache is re-hashed whenever this process has not
yet seen it with its current inode, size and modification time (at start, and after
anything rewrote it); one that no longer matches is removed and downloaded again.

**Shared by harvesters.** Every object has a lock file next to it (``.<hex>.lock``).
``flock`` on it (polled, so waiting never blocks the event loop) is held while the object
is checked, downloaded and linked into a job directory, so two harvesters sharing the
directory download it once and never evict it while the other links it.

**Size cap, LRU, never a file in use.** Each use touches a marker (``.<hex>.used``);
after a download the least recently used objects are removed until the cache fits
``max_size``, except objects with a hard link in some job directory (link count above
one: a staged or running job, of any harvester on that filesystem) and objects whose lock
is held. A cache holding only files in use may exceed the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ByteSize, ConfigDict, Field

from edge.harvester.filelock import evict_over_cap, file_lock, unless_locked
from shared.edge_api import StagedFile

log = logging.getLogger(__name__)

LOCK_POLL_SECONDS = 0.1
HASH_CHUNK = 4 * 1024 * 1024
OBJECTS = "sha256"

Fetch = Callable[[str], AsyncIterator[bytes]]
"""Streams the body of a presigned URL (``EdgeApiClient.download_stream``)."""


class DatasetCacheConfig(BaseModel):
    """The site config's ``[datasets]`` table."""

    model_config = ConfigDict(extra="forbid")

    dir: Path | None = None
    """Where the cache lives; must be on the same filesystem as the edge root (job
    directories hold hard links into it). None: ``datasets/`` under the edge root."""
    max_size: ByteSize = ByteSize(500 * 2**30)
    """Size cap of the cache (``"2TiB"``, ``"500GB"`` or bytes)."""
    download_timeout: float = Field(default=6 * 3600.0, gt=0)
    """Seconds one file's download may take before the job is failed."""
    present: dict[str, Path] = {}
    """Datasets already on the site's shared filesystem: name -> directory (as the
    centre's own transfer service left them). Their files are used in place."""


class DatasetError(RuntimeError):
    """A file could not be brought into the cache; the message is for the task's user."""


@dataclass(frozen=True)
class CachedObject:
    path: Path
    size: int
    last_used: float
    links: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DatasetCache:
    """The cache directory of one site. Cheap; one per harvester."""

    def __init__(
        self, directory: Path, *, max_size: int, fetch: Fetch, download_timeout: float = 21600.0
    ) -> None:
        self.directory = directory
        self.objects = directory / OBJECTS
        self.max_size = max_size
        self.download_timeout = download_timeout
        self._fetch = fetch
        self._local: dict[str, asyncio.Lock] = {}
        self._trusted: dict[str, tuple[int, int, int]] = {}
        """sha256 -> (inode, size, mtime_ns) of the object as this process last hashed it."""
        self.downloads = 0
        """Files downloaded by this process (for tests and the metrics)."""

    def path_for(self, sha256: str) -> Path:
        return self.objects / sha256

    def _lock_path(self, sha256: str) -> Path:
        return self.objects / f".{sha256}.lock"

    def _used_path(self, sha256: str) -> Path:
        return self.objects / f".{sha256}.used"

    @contextlib.asynccontextmanager
    async def hold(self, files: Sequence[StagedFile]) -> AsyncIterator[Mapping[str, Path]]:
        """Every file of ``files`` verified in the cache (downloaded first if needed) and
        locked until the block ends: link them into the job directory inside it. Yields
        sha256 -> object path. Locks are taken in sha256 order, so two holders never wait
        for each other. Raises DatasetError."""
        await asyncio.to_thread(self.objects.mkdir, parents=True, exist_ok=True)
        wanted = {f.sha256: f for f in files}
        async with contextlib.AsyncExitStack() as stack:
            found: dict[str, Path] = {}
            for sha256 in sorted(wanted):
                await stack.enter_async_context(self._locked(sha256))
                found[sha256] = await self._ensure_locked(wanted[sha256])
            yield found

    @contextlib.asynccontextmanager
    async def _locked(self, sha256: str) -> AsyncIterator[None]:
        local = self._local.setdefault(sha256, asyncio.Lock())
        async with local, file_lock(self._lock_path(sha256), LOCK_POLL_SECONDS):
            yield

    async def _ensure_locked(self, file: StagedFile) -> Path:
        target = self.path_for(file.sha256)
        if await asyncio.to_thread(self._intact, file, target):
            await asyncio.to_thread(self._touch, file.sha256)
            return target
        try:
            await asyncio.wait_for(self._download(file, target), self.download_timeout)
        except TimeoutError:
            raise DatasetError(
                f"{file.name}: the download did not finish within "
                f"{self.download_timeout:.0f} s (datasets.download_timeout)"
            ) from None
        await asyncio.to_thread(self._touch, file.sha256)
        return target

    def _intact(self, file: StagedFile, target: Path) -> bool:
        """Whether ``target`` holds the file's bytes; removes it when it does not."""
        try:
            stat = target.stat()
        except FileNotFoundError:
            return False
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if self._trusted.get(file.sha256) == key:
            return True
        if stat.st_size == file.size and sha256_of(target) == file.sha256:
            self._trusted[file.sha256] = key
            return True
        log.warning("dataset cache: %s (%s) is corrupted; downloading it again", target, file.name)
        self._trusted.pop(file.sha256, None)
        target.unlink(missing_ok=True)
        return False

    async def _download(self, file: StagedFile, target: Path) -> None:
        partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        digest = hashlib.sha256()
        size = 0
        log.info("dataset cache: downloading %s (%d bytes)", file.name, file.size)
        try:
            out = await asyncio.to_thread(partial.open, "xb")
            with out:
                for url in file.parts:
                    async for chunk in self._fetch(url):
                        size += len(chunk)
                        if size > file.size:
                            raise DatasetError(
                                f"{file.name}: the store holds more than the "
                                f"{file.size} bytes declared"
                            )
                        digest.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
                await asyncio.to_thread(out.flush)
                await asyncio.to_thread(os.fsync, out.fileno())
            if size != file.size:
                raise DatasetError(
                    f"{file.name}: the store holds {size} bytes, {file.size} were declared"
                )
            if digest.hexdigest() != file.sha256:
                raise DatasetError(f"{file.name}: the downloaded bytes do not match its sha256")
            await asyncio.to_thread(self._install, partial, target, file.sha256)
            self.downloads += 1
        except OSError as exc:
            raise DatasetError(f"{file.name}: cannot write the dataset cache: {exc}") from exc
        finally:
            await asyncio.to_thread(partial.unlink, missing_ok=True)

    def _install(self, partial: Path, target: Path, sha256: str) -> None:
        partial.chmod(0o444)
        os.replace(partial, target)
        stat = target.stat()
        self._trusted[sha256] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _touch(self, sha256: str) -> None:
        used = self._used_path(sha256)
        used.touch()
        os.utime(used)

    def cached(self) -> list[CachedObject]:
        """Every complete object, least recently used first."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.objects):
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stat = entry.stat()
                    try:
                        used = os.stat(self._used_path(entry.name)).st_mtime
                    except FileNotFoundError:
                        used = stat.st_mtime
                    found.append(CachedObject(Path(entry.path), stat.st_size, used, stat.st_nlink))
        return sorted(found, key=lambda c: c.last_used)

    def evict(self) -> list[Path]:
        """Remove least recently used objects until the cache fits ``max_size``; never
        one linked from a job directory or locked. Blocking: run it in a thread.
        Returns the removed files."""
        return evict_over_cap(
            self.cached(),
            self.max_size,
            in_use=lambda c: c.links > 1,
            remove=self._remove_unused,
            what="dataset",
            directory=self.directory,
        )

    def _remove_unused(self, target: Path) -> bool:
        sha256 = target.name
        with unless_locked(self._lock_path(sha256)) as free:
            if not free:
                return False
            try:
                if target.stat().st_nlink > 1:  # linked since we listed it
                    return False
            except FileNotFoundError:
                return True
            target.unlink(missing_ok=True)
            self._used_path(sha256).unlink(missing_ok=True)
            self._trusted.pop(sha256, None)
            return True


__all__ = ["CachedObject", "DatasetCache", "DatasetCacheConfig", "DatasetError", "sha256_of"]
