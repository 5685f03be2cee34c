"""Which image a leased job's node agent runs, pulled into the SIF cache first if needed.

Called by the harvester for each leased job before it is staged and submitted. The
job's ``container`` (one reference or a map arch -> reference) is resolved for the
site's arch; with an ``apptainer`` or ``singularity`` runtime a registry reference is
then pulled on the login node (:mod:`edge.harvester.sifcache`) and the job runs the SIF
path. Other runtimes, and references that are already paths, get the resolved
reference unchanged: the runtime on the node accepts or refuses it with its own message.

A pull can outlast the job's lease, so while the job waits for it the harvester keeps
the lease alive with heartbeats; if the central service answers that the job is no
longer wanted, the wait is abandoned (and the pull stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path

from edge.harvester.sifcache import ImagePullError, SifCache, SifCacheConfig
from edge.harvester.staging import StagingError
from shared.edge_api import Arch, JobSpec
from shared.runtime import RuntimeConfig
from shared.runtime.images import ImageResolutionError, is_pull_reference, resolve_image
from shared.runtime.sif import SifRuntimeConfig

log = logging.getLogger(__name__)

KeepAlive = Callable[[], Awaitable[bool]]
"""Extends the job's lease; False when the central service no longer wants the job."""
InUse = Callable[[], Collection[Path | str]]
"""The images of the jobs staged or running at the site, which eviction must keep."""


class ImageStagingError(StagingError):
    """No usable image for the job on this site; the message is for the task's user."""


class LeaseLostError(Exception):
    """The central service took the job back while its image was being pulled."""


def open_cache(config: SifCacheConfig, runtime: RuntimeConfig, root: Path) -> SifCache | None:
    """The site's SIF cache, or None when its runtime runs no SIF images."""
    if not isinstance(runtime, SifRuntimeConfig):
        return None
    return SifCache(
        config.dir or root / "images",
        tool=config.executable or runtime.executable,
        max_size=int(config.max_size),
        pull_timeout=config.pull_timeout,
        pull_args=config.pull_args,
    )


class ImageStager:
    """Turns a job's ``container`` into the image its node agent runs."""

    def __init__(
        self,
        arch: Arch,
        cache: SifCache | None,
        in_use: InUse,
        keepalive_interval: float,
    ) -> None:
        self.arch = arch
        self.cache = cache
        self._in_use = in_use
        self._interval = keepalive_interval
        self._reserved: dict[Path, int] = {}

    @property
    def reserved(self) -> frozenset[Path]:
        """The SIF files of jobs being pulled or staged right now."""
        return frozenset(self._reserved)

    def resolve(self, spec: JobSpec) -> str | None:
        try:
            return resolve_image(spec.container, self.arch)
        except ImageResolutionError as exc:
            raise ImageStagingError(str(exc)) from exc

    @contextlib.asynccontextmanager
    async def reserve(self, spec: JobSpec, keepalive: KeepAlive) -> AsyncIterator[str | None]:
        """The image for ``spec`` on this site (a SIF path when it had to be pulled),
        kept from eviction until the block ends: stage and submit the job inside it.

        Raises ImageStagingError (the job fails with its message) and LeaseLostError.
        """
        reference = self.resolve(spec)
        if self.cache is None or reference is None or not is_pull_reference(reference):
            yield reference
            return
        target = self.cache.path_for(reference, self.arch)
        self._reserved[target] = self._reserved.get(target, 0) + 1
        try:
            try:
                image = await self._with_keepalive(
                    self.cache.ensure(reference, self.arch), keepalive, spec.job_id
                )
                await asyncio.to_thread(self.cache.evict, self._keep())
            except ImagePullError as exc:
                raise ImageStagingError(str(exc)) from exc
            yield str(image)
        finally:
            self._reserved[target] -= 1
            if not self._reserved[target]:
                del self._reserved[target]

    def _keep(self) -> set[Path | str]:
        return {*self._in_use(), *self._reserved}

    async def _with_keepalive(
        self, pull: Awaitable[Path], keepalive: KeepAlive, job_id: str
    ) -> Path:
        task = asyncio.ensure_future(pull)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._interval)
                if done:
                    return task.result()
                if not await keepalive():
                    log.info("job %s: taken back while its image was pulled", job_id)
                    raise LeaseLostError(job_id)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ImagePullError):
                    await task


__all__ = ["ImageStager", "ImageStagingError", "LeaseLostError", "open_cache"]
