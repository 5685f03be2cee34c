"""The SIF cache: container images pulled once, on the login node, into the shared filesystem.

Compute nodes have no network and never pull, so before a job is released to the
batch system the harvester runs ``<tool> pull --arch ARCH DEST REF`` here, where
``<tool>`` is the site runtime's ``apptainer`` or ``singularity``, and the job's node
agent is handed the path of the SIF file.

One file per (image, arch), named by :func:`shared.runtime.images.sif_cache_name`
from the reference's pinned digest (``...@sha256:<hex>``) or, for a reference without
one, from the sha256 of the reference text. So two tags of one pinned image share a
file, but an unpinned tag that moves to a new image keeps the old file until it is
evicted: pin digests for reproducible runs.

**Concurrency.** A pull takes minutes and runs as an asynchronous subprocess, never on
the event loop. Each file has a lock file next to it: ``flock`` (polled, so waiting
never blocks the loop) keeps a second pull of the same image, by this harvester or
another process sharing the directory, from starting; whoever gets the lock second finds
the file there. The tool writes under a temporary name that is renamed into place, so
the cache never holds half an image.

**Size cap.** A file's modification time is its last use (touched at every hit). After a
pull, the least recently used files are removed until the cache fits ``max_size``,
except those the caller says are in use (images of staged or running jobs) and those
whose lock is held. A cache holding only images in use may exceed the cap.

Contract-tested only: Apptainer and Singularity are not installable on the project's
test machines; the tests run a recording stand-in of the tool that writes a fake SIF.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import signal
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ByteSize, ConfigDict, Field

from edge.harvester.filelock import evict_over_cap, file_lock, unless_locked
from shared.runtime.images import normalise_arch, pinned_digest, sif_cache_name

log = logging.getLogger(__name__)

LOCK_POLL_SECONDS = 0.2
OUTPUT_TAIL_CHARS = 2000
SIF_SUFFIX = ".sif"


class SifCacheConfig(BaseModel):
    """The site config's ``[images]`` table."""

    model_config = ConfigDict(extra="forbid")

    dir: Path | None = None
    """Where the SIF files live; must be readable by every compute node at the same
    path. None: ``images/`` under the edge root."""
    max_size: ByteSize = ByteSize(100 * 2**30)
    """Size cap of the cache (``"200GiB"``, ``"500GB"`` or bytes)."""
    pull_timeout: float = Field(default=3600.0, gt=0)
    """Seconds one pull may take before it is stopped and the job failed."""
    executable: str | None = None
    """The pulling tool on the login node; None: the runtime's ``executable``."""
    pull_args: list[str] = []
    """Added after ``pull`` (e.g. ``["--disable-cache"]``)."""


class ImagePullError(RuntimeError):
    """The image could not be pulled; the message (with the tool's own) is for the user."""


def cache_digest(reference: str) -> str:
    """The key a reference is cached under: its pinned digest, else a hash of its text."""
    return pinned_digest(reference) or "sha256:" + hashlib.sha256(reference.encode()).hexdigest()


@dataclass(frozen=True)
class CachedImage:
    path: Path
    size: int
    last_used: float


def _tail(output: bytes) -> str:
    text = output.decode(errors="replace").strip()
    return text[-OUTPUT_TAIL_CHARS:] if text else "(no output)"


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Kill the tool and everything it started (it runs in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


class SifCache:
    """The cache directory and the tool that fills it. Cheap; one per harvester."""

    def __init__(
        self,
        directory: Path,
        *,
        tool: str,
        max_size: int,
        pull_timeout: float = 3600.0,
        pull_args: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.tool = tool
        self.max_size = max_size
        self.pull_timeout = pull_timeout
        self.pull_args = list(pull_args)
        self._environ = environ
        self._local: dict[str, asyncio.Lock] = {}

    def path_for(self, reference: str, arch: str) -> Path:
        return self.directory / sif_cache_name(cache_digest(reference), arch)

    def _lock_path(self, image: Path) -> Path:
        return image.with_name(f".{image.name}.lock")

    async def ensure(self, reference: str, arch: str) -> Path:
        """The SIF file of ``reference`` for ``arch``, pulled first if missing.

        Raises ImagePullError with the tool's message when the pull fails; cancelling
        the call stops the tool.
        """
        image = self.path_for(reference, arch)
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        local = self._local.setdefault(image.name, asyncio.Lock())
        async with local, file_lock(self._lock_path(image), LOCK_POLL_SECONDS):
            if not await asyncio.to_thread(image.is_file):
                await self._pull(reference, normalise_arch(arch), image)
            await asyncio.to_thread(os.utime, image)
        return image

    async def _pull(self, reference: str, arch: str, image: Path) -> None:
        partial = image.with_name(f".{image.name}.{secrets.token_hex(4)}.part")
        argv = [self.tool, "pull", *self.pull_args, "--arch", arch, str(partial), reference]
        what = f"{Path(self.tool).name} pull of {reference} for {arch}"
        log.info("pulling %s into %s", reference, image)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=None if self._environ is None else dict(self._environ),
            )
        except OSError as exc:
            raise ImagePullError(
                f"{what}: cannot run {self.tool!r} on the login node ({exc.strerror}); "
                "install it there or set images.executable"
            ) from exc
        try:
            try:
                output, _ = await asyncio.wait_for(process.communicate(), self.pull_timeout)
            except TimeoutError:
                await _stop(process)
                raise ImagePullError(
                    f"{what} did not finish within {self.pull_timeout:.0f} s (images.pull_timeout)"
                ) from None
            except asyncio.CancelledError:
                await _stop(process)
                raise
            if process.returncode != 0:
                raise ImagePullError(
                    f"{what} failed (exit status {process.returncode}): {_tail(output)}"
                )
            if not partial.is_file() or partial.stat().st_size == 0:
                raise ImagePullError(f"{what} exited 0 but wrote no image: {_tail(output)}")
            partial.chmod(0o644)
            os.replace(partial, image)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    def images(self) -> list[CachedImage]:
        """Every complete image in the cache, least recently used first."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                if entry.name.startswith(".") or not entry.name.endswith(SIF_SUFFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stat = entry.stat()
                    found.append(CachedImage(Path(entry.path), stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda c: c.last_used)

    def evict(self, in_use: Collection[Path | str]) -> list[Path]:
        """Remove least recently used images until the cache fits ``max_size``; never
        one in ``in_use`` or one whose lock is held. Blocking: run it in a thread.
        Returns the removed files."""
        keep = {Path(p) for p in in_use}
        return evict_over_cap(
            self.images(),
            self.max_size,
            in_use=lambda c: c.path in keep,
            remove=self._remove_unlocked,
            what="image",
            directory=self.directory,
        )

    def _remove_unlocked(self, image: Path) -> bool:
        with unless_locked(self._lock_path(image)) as free:
            if free:
                image.unlink(missing_ok=True)
            return free


__all__ = [
    "CachedImage",
    "ImagePullError",
    "SifCache",
    "SifCacheConfig",
    "cache_digest",
]
