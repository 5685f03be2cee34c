"""The worker directory of a late-binding batch job (layout 1; docs/edge.md).

A *worker* is one batch job holding one node's GPUs; its directory
``$ROOT/workers/<worker_id>/`` is shared by the harvester and the worker agent::

    worker.json       the harvester's record: batch id, and the settings the agent reads
    status.json       written by the worker agent: slots, GPU per slot, jobs, walltime end
    heartbeat         touched by the worker agent every interval
    inbox/<job_id>    a job dispatched to this worker, written atomically by the harvester
                      (JSON: the job id and, when known, its expected run time)
    claimed/<job_id>  the same entry, renamed there by the slot that runs the job

Who runs a job is decided by one ``rename`` out of ``inbox/``: the worker claims an
entry by renaming it into ``claimed/``, the harvester takes one back by renaming it into
``withdrawn/``. Exactly one of the two renames succeeds, so a job is never run by two
slots, nor run after the harvester gave it to another worker, even across restarts of
either side. The job itself keeps its ``jobs/<job_id>/`` directory and protocol.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from edge.fsproto import check_file_name, read_json, write_json_atomic

M = TypeVar("M", bound=BaseModel)

WORKERS_DIR = "workers"
INBOX = "inbox"
CLAIMED = "claimed"
WITHDRAWN = "withdrawn"


class WorkerSettings(BaseModel):
    """What the harvester tells a late-binding worker agent, in ``worker.json``."""

    slots: int = Field(ge=1, le=64)
    """One payload slot per GPU of the node."""
    walltime_seconds: float | None = Field(default=None, gt=0)
    """The batch job's time limit; None: unknown, late binding never stops for it."""
    expected_job_seconds: float = Field(default=900.0, gt=0)
    """A job's expected duration until the worker has seen one finish."""
    idle_seconds: float = Field(default=60.0, ge=0)
    """The worker exits after this long with an empty inbox and nothing running."""
    heartbeat_interval: float = Field(default=10.0, gt=0)
    poll_interval: float = Field(default=0.5, gt=0)
    """How often an idle slot looks into the inbox."""


class WorkerRecord(BaseModel):
    """``workers/<worker_id>/worker.json``, written only by the harvester."""

    worker_id: str
    kind: str
    layout: str = "single"
    jobs: list[str] = Field(default_factory=list)
    """Jobs bound at submission (the one job of a ``single`` worker)."""
    settings: WorkerSettings | None = None
    compute_class: str | None = None
    """A late-binding worker submitted with a compute class's batch options: it takes
    only that class's jobs (None: the jobs of every class without options of its own)."""
    batch_id: str | None = None
    submitted_at: datetime | None = None
    error: str = ""
    released: bool = False
    """The harvester cancelled it for lack of work: never dispatch to it again."""
    retired: bool = False
    """Ended with nothing left to settle: a restarted harvester does not read it again."""


class SlotStatus(BaseModel):
    gpu: str
    job_id: str | None = None
    jobs_run: int = 0


WorkerState = Literal["running", "draining", "exited"]


class WorkerStatus(BaseModel):
    """``workers/<worker_id>/status.json``, written only by the worker agent.

    ``draining``: it takes no more jobs (walltime too short, or stopping) but payloads
    still run; ``exited``: the agent has ended, whatever is in its inbox is left over.
    """

    state: WorkerState
    host: str = ""
    pid: int | None = None
    slots: list[SlotStatus] = Field(default_factory=list)
    started_at: datetime | None = None
    walltime_end: datetime | None = None
    expected_job_seconds: float | None = None
    reason: str = ""

    @property
    def accepting(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class WorkerPaths:
    dir: Path

    @classmethod
    def under(cls, root: Path, worker_id: str) -> WorkerPaths:
        return cls(root / WORKERS_DIR / worker_id)

    @property
    def worker_id(self) -> str:
        return self.dir.name

    @property
    def record(self) -> Path:
        return self.dir / "worker.json"

    @property
    def status(self) -> Path:
        return self.dir / "status.json"

    @property
    def heartbeat(self) -> Path:
        return self.dir / "heartbeat"

    @property
    def inbox(self) -> Path:
        return self.dir / INBOX

    @property
    def claimed(self) -> Path:
        return self.dir / CLAIMED

    @property
    def withdrawn(self) -> Path:
        return self.dir / WITHDRAWN

    @property
    def agent_log(self) -> Path:
        return self.dir / "agent.log"

    def make(self) -> None:
        for directory in (self.inbox, self.claimed, self.withdrawn):
            directory.mkdir(parents=True, exist_ok=True)

    def read_record(self) -> WorkerRecord | None:
        return _read(self.record, WorkerRecord)

    def save_record(self, record: WorkerRecord) -> None:
        write_json_atomic(self.record, record.model_dump(mode="json"))

    def read_status(self) -> WorkerStatus | None:
        return _read(self.status, WorkerStatus)


def _read(path: Path, model: type[M]) -> M | None:
    raw = read_json(path)
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def entries(directory: Path) -> list[str]:
    """Job ids with an entry in ``directory``, oldest first (then by name)."""
    found: list[tuple[float, str]] = []
    try:
        listing = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in listing:
        if entry.name.startswith("."):
            continue  # a write in progress
        with contextlib.suppress(FileNotFoundError):
            found.append((entry.stat().st_mtime, entry.name))
    return [name for _, name in sorted(found)]


def dispatch(worker: WorkerPaths, job_id: str, expected_seconds: float | None = None) -> None:
    """Put ``job_id`` into the worker's inbox (the harvester's side), with how long the
    job is expected to run when that is known."""
    entry: dict[str, object] = {"job_id": job_id}
    if expected_seconds is not None:
        entry["expected_seconds"] = expected_seconds
    write_json_atomic(worker.inbox / check_file_name(job_id), entry)


def expected_seconds(worker: WorkerPaths, job_id: str) -> float | None:
    """The expected run time an inbox entry carries; None if it has none (or is gone:
    the entry was claimed or withdrawn meanwhile, which the claim will find out)."""
    raw = read_json(worker.inbox / job_id)
    value = raw.get("expected_seconds") if isinstance(raw, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _moved(source: Path, target: Path) -> bool:
    """Rename ``source`` to ``target``; False if ``source`` was gone (someone else's
    rename won: on a shared filesystem the rename is what decides)."""
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return False
    return True


def claim(worker: WorkerPaths, job_id: str) -> bool:
    """Move the entry from the inbox to ``claimed/``; False if someone else moved it."""
    return _moved(worker.inbox / job_id, worker.claimed / job_id)


def retire_claim(worker: WorkerPaths, job_id: str) -> bool:
    """Hide the claim of an attempt that is over (renamed to a dot-name, which
    :func:`entries` skips), so a later attempt of the same job id can be dispatched."""
    hidden = worker.claimed / f".{job_id}.{secrets.token_hex(4)}.done"
    return _moved(worker.claimed / job_id, hidden)


def unclaim(worker: WorkerPaths, job_id: str) -> None:
    """Put back an entry this worker claimed but did not start (it is stopping)."""
    os.rename(worker.claimed / job_id, worker.inbox / job_id)


def withdraw(worker: WorkerPaths, job_id: str) -> bool:
    """Take an unclaimed entry back (the harvester's side); False if it was claimed."""
    return _moved(worker.inbox / job_id, worker.withdrawn / job_id)
