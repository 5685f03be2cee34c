"""Which training files a leased job's payload reads, brought onto the site first.

A job spec names its datasets (``trainingDS``, or a segment's ``datasets``, with the
segment's ``files`` as a selection). For each, in order:

* an **uploaded** dataset: its files are put into the site's dataset cache (downloaded
  once per site, :mod:`edge.harvester.datacache`) and hard-linked into the job's work
  directory as ``datasets/<dataset>/<file>``; the payload sees those relative paths;
* a dataset the site declares **present** (``[datasets.present]``, name -> directory):
  its files are listed and the payload sees their absolute paths, in place;
* any other name is handed to the payload unchanged, as before datasets existed.

``input_ds.json`` and ``%IN_DATA`` list the result (PanDA's semantics: every file of the
dataset, or only the segment's files). A segment file the dataset does not hold fails the
job with a message naming it. While files download the job's lease is kept alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge.fsproto import JobPaths, jobs_root
from edge.harvester.api import ApiUnavailableError, EdgeApiError
from edge.harvester.datacache import DatasetCache, DatasetError
from edge.harvester.images import LeaseLostError
from edge.harvester.staging import StagingError
from shared.domain.datasets import NAME_PATTERN, check_file_path
from shared.edge_api import DatasetInput, JobSpec, StagedFile

log = logging.getLogger(__name__)

DATA_DIR = "datasets"
"""The work directory's sub-directory holding the links to a job's dataset files."""
_NAME = re.compile(NAME_PATTERN)

KeepAlive = Callable[[], Awaitable[bool]]


class DatasetStagingError(StagingError):
    """The job's training files cannot be provided; the message is for the task's user."""


@dataclass
class JobInputs:
    """What staging adds to the job: the list the payload reads and the links to make."""

    training_files: list[str]
    links: dict[str, str] = field(default_factory=dict)
    """work-relative path -> sha256 of the cached object to hard-link there."""
    objects: Mapping[str, Path] = field(default_factory=dict)
    """sha256 -> cache path, filled while the objects are held."""

    def link_sources(self) -> dict[str, Path]:
        return {rel: self.objects[sha] for rel, sha in self.links.items()}


def _present_files(name: str, directory: Path) -> dict[str, Path]:
    """Regular files under ``directory`` by relative path, sorted (symlinks are followed:
    the site admin's directory, not a payload's)."""
    if not directory.is_dir():
        raise DatasetStagingError(
            f"dataset {name}: the site's directory {directory} for it does not exist"
        )
    found: dict[str, Path] = {}
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for leaf in sorted(files):
            path = Path(current) / leaf
            if leaf.startswith(".") or not path.is_file():
                continue
            found[path.relative_to(directory).as_posix()] = path
    return dict(sorted(found.items()))


def _selected(ds: DatasetInput, names: list[str]) -> list[str]:
    if ds.select is None:
        return names
    held = set(names)
    missing = [n for n in ds.select if n not in held]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetStagingError(
            f"dataset {ds.name} has no file {shown} (named by the segment's files)"
        )
    return list(dict.fromkeys(ds.select))


def plan_inputs(spec: JobSpec, present: Mapping[str, Path]) -> tuple[JobInputs, list[StagedFile]]:
    """The job's training-file list and links, and the uploaded files to hold in the
    cache. Blocking (lists present directories): run it in a thread."""
    covered: set[str] = set()
    resolved: list[str] = []
    links: dict[str, str] = {}
    to_hold: dict[str, StagedFile] = {}
    for ds in spec.datasets:
        covered.update(ds.select if ds.select is not None else [ds.name])
        if ds.files is not None:
            if not _NAME.match(ds.name):
                raise DatasetStagingError(f"dataset name {ds.name!r} is not usable here")
            by_name = {}
            for f in ds.files:
                try:
                    by_name[check_file_path(f.name)] = f
                except ValueError as exc:
                    raise DatasetStagingError(f"dataset {ds.name}: {exc}") from None
            for name in _selected(ds, list(by_name)):
                rel = f"{DATA_DIR}/{ds.name}/{name}"
                links[rel] = by_name[name].sha256
                to_hold[by_name[name].sha256] = by_name[name]
                resolved.append(rel)
        elif ds.name in present:
            files = _present_files(ds.name, present[ds.name])
            resolved.extend(str(files[n]) for n in _selected(ds, list(files)))
        else:
            resolved.extend(ds.select if ds.select is not None else [ds.name])
    kept = [name for name in spec.training_files if name not in covered]
    return JobInputs([*kept, *resolved], links), list(to_hold.values())


def unlink_inputs(work: Path, links: list[str]) -> None:
    """Remove a reported job's links into the cache, so its objects may be evicted."""
    for rel in links:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            (work / rel).unlink()


def sweep_reported_inputs(root: Path) -> int:
    """Remove the dataset links left in reported job directories by a harvester that
    died between a report and its cleanup, so their cache files can be evicted.
    Returns how many directories were swept."""
    swept = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(jobs_root(root)):
            paths = JobPaths(Path(entry.path))
            links = paths.work / DATA_DIR
            if paths.reported.exists() and links.is_dir() and not links.is_symlink():
                shutil.rmtree(links, ignore_errors=True)
                swept += 1
    return swept


class DatasetStager:
    """Brings a job's dataset files onto the site before it is staged."""

    def __init__(
        self, cache: DatasetCache, present: Mapping[str, Path], keepalive_interval: float
    ) -> None:
        self.cache = cache
        self.present = dict(present)
        self._interval = keepalive_interval

    @contextlib.asynccontextmanager
    async def reserve(self, spec: JobSpec, keepalive: KeepAlive) -> AsyncIterator[JobInputs | None]:
        """The job's inputs, their cached files held (never evicted) until the block
        ends: stage the job inside it. None when the job names no dataset.

        Raises DatasetStagingError (the job fails with its message) and LeaseLostError.
        """
        if not spec.datasets:
            yield None
            return
        inputs, files = await asyncio.to_thread(plan_inputs, spec, self.present)
        if not files:
            yield inputs
            return
        holder = self.cache.hold(files)
        try:
            inputs.objects = await self._with_keepalive(holder.__aenter__(), keepalive, spec)
        except DatasetError as exc:
            raise DatasetStagingError(str(exc)) from exc
        except (EdgeApiError, ApiUnavailableError) as exc:
            raise DatasetStagingError(f"a dataset file could not be downloaded: {exc}") from exc
        try:
            await asyncio.to_thread(self.cache.evict)
            yield inputs
        finally:
            await holder.__aexit__(None, None, None)

    async def _with_keepalive(
        self, entering: Awaitable[Mapping[str, Path]], keepalive: KeepAlive, spec: JobSpec
    ) -> Mapping[str, Path]:
        task = asyncio.ensure_future(entering)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._interval)
                if done:
                    return task.result()
                if not await keepalive():
                    log.info("job %s: taken back while its datasets downloaded", spec.job_id)
                    raise LeaseLostError(spec.job_id)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


__all__ = [
    "DATA_DIR",
    "DatasetStager",
    "DatasetStagingError",
    "JobInputs",
    "plan_inputs",
    "sweep_reported_inputs",
    "unlink_inputs",
]
