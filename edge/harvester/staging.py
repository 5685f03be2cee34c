"""Staging: a leased job becomes a job directory the node agent can run offline.

The directory is built under a hidden temporary name and renamed into place, so a job
directory either exists with its complete ``job.json`` or not at all; a harvester
killed while staging leaves only a ``jobs/.staging-*`` leftover, swept at start.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path

from edge.documents import JobDocument, NodeSettings, file_names
from edge.fsproto import (
    JobPaths,
    UnsafeNameError,
    check_file_name,
    jobs_root,
    write_json_atomic,
    write_text_atomic,
)
from edge.harvester.restore import RestoreError, restore_into
from shared.clock import utcnow
from shared.edge_api import JobSpec

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STAGING_PREFIX = ".staging-"
ATTIC = ".attic"


class StagingError(ValueError):
    """The job cannot be staged; the message is for the user who submitted the task."""


def path_inside(path: str) -> bool:
    """Whether ``path`` is a relative path that stays inside its directory."""
    parts = path.split("/")
    return (
        bool(path)
        and "\\" not in path
        and "\0" not in path
        and not any(p in ("", ".", "..") for p in parts)
    )


def check_spec(spec: JobSpec) -> None:
    """Refuse what could escape the job directory (odd job ids and file names) or
    could not be passed to the payload (odd variable names)."""
    if not _JOB_ID.match(spec.job_id) or ".." in spec.job_id:
        raise StagingError(f"job id {spec.job_id!r} is not usable as a directory name")
    if not spec.points:
        raise StagingError("the job has no point to evaluate")
    for name in spec.env:
        if not _ENV_NAME.match(name):
            raise StagingError(f"environment variable name {name!r} is not valid")
    try:
        for name in file_names(JobDocument(spec=spec)):
            check_file_name(name)
    except UnsafeNameError as exc:
        raise StagingError(str(exc)) from exc
    config = spec.checkpoint_config
    if config is not None:
        for path in [*config.save, *([config.load] if config.load else [])]:
            if not path_inside(path):
                raise StagingError(f"checkpoint path {path!r} is not inside the work directory")


def _link_inputs(work: Path, links: Mapping[str, Path]) -> None:
    for rel, source in links.items():
        if not path_inside(rel):
            raise StagingError(f"training file path {rel!r} is not inside the work directory")
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise StagingError(
                    "the dataset cache is on another filesystem than the edge root; "
                    "set datasets.dir on the edge root's filesystem"
                ) from exc
            raise


def _write_job(
    directory: Path, doc: JobDocument, checkpoint: bytes | None, links: Mapping[str, Path]
) -> None:
    paths = JobPaths(directory)
    spec = doc.spec
    paths.work.mkdir(parents=True, exist_ok=True)
    _link_inputs(paths.work, links)
    if checkpoint is not None and spec.checkpoint_config is not None:
        try:
            restore_into(paths.work, checkpoint, spec.checkpoint_config.load)
        except RestoreError as exc:
            raise StagingError(str(exc)) from exc
    for name, text in spec.task_files.items():
        write_text_atomic(paths.work / name, text)
    write_json_atomic(paths.work / spec.files.input, spec.points[0].params, indent=None)
    write_json_atomic(paths.work / spec.files.training_data, spec.training_files, indent=None)
    write_json_atomic(paths.job_json, doc.model_dump(mode="json"))


def stage_job(
    root: Path,
    spec: JobSpec,
    node: NodeSettings,
    *,
    checkpoint: bytes | None = None,
    links: Mapping[str, Path] | None = None,
) -> tuple[JobPaths, bool]:
    """Create ``jobs/<job_id>/`` for ``spec``; return its paths and whether it is new.

    ``checkpoint`` (verified by :func:`edge.harvester.restore.fetch_checkpoint`) is
    restored into the new work directory before anything else is written there;
    ``links`` (work-relative path -> dataset cache file) are hard-linked into it.

    A job directory that already exists and was not reported yet is the same job
    leased again (a new generation after the harvester was away): it is adopted, only
    ``job.json`` is rewritten, and whatever the node agent already did counts. One
    already reported is moved to ``jobs/.attic/`` and the job is staged afresh.
    Raises StagingError for a spec that must not be staged.
    """
    check_spec(spec)
    links = links or {}
    doc = JobDocument(spec=spec, node=node, staged_at=utcnow(), inputs=list(links))
    paths = JobPaths.under(root, spec.job_id)
    if paths.dir.exists():
        if not paths.reported.exists():
            log.info("job %s leased again (generation %d): adopted", spec.job_id, spec.generation)
            write_json_atomic(paths.job_json, doc.model_dump(mode="json"))
            return paths, False
        attic = jobs_root(root) / ATTIC
        attic.mkdir(exist_ok=True)
        os.replace(paths.dir, attic / f"{spec.job_id}.{secrets.token_hex(4)}")
    jobs_root(root).mkdir(parents=True, exist_ok=True)
    tmp = jobs_root(root) / f"{STAGING_PREFIX}{spec.job_id}.{secrets.token_hex(4)}"
    try:
        tmp.mkdir()
        _write_job(tmp, doc, checkpoint, links)
        os.rename(tmp, paths.dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return paths, True


def sweep_staging_leftovers(root: Path) -> None:
    """Remove half-staged directories of a harvester that died while staging."""
    directory = jobs_root(root)
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name.startswith(STAGING_PREFIX):
            with contextlib.suppress(OSError):
                shutil.rmtree(entry)
