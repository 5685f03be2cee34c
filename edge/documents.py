"""The documents written on the shared filesystem (``job.json``, ``status.json`` ...).

They are the contract between the harvester (login node) and the node agent (compute
node), which may run different releases during an upgrade; so the agent's documents
ignore unknown fields when read, and every field added later needs a default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.edge_api import JobSpec
from shared.runtime import ProcessRuntimeConfig, RuntimeConfig

NodeState = Literal["running", "finished", "failed", "killed", "preempted"]
TERMINAL_STATES: frozenset[str] = frozenset({"finished", "failed", "killed", "preempted"})
"""``preempted``: stopped by the batch system (walltime, cancel) with a checkpoint to
resume from; ``killed``: stopped any other way, or without a checkpoint."""
MAX_CHECKPOINT_BYTES = 100 * 1024 * 1024


class NodeSettings(BaseModel):
    """What the harvester adds to the leased spec for the node agent."""

    heartbeat_interval: float = Field(default=10.0, gt=0)
    kill_grace_seconds: float = Field(default=30.0, ge=0)
    runtime: RuntimeConfig = Field(default_factory=ProcessRuntimeConfig)
    image: str | None = None
    """The image the runtime starts (a SIF path once images are pulled); None: none."""
    gpus: list[str] | None = None
    checkpoint_unit_seconds: float = Field(default=60.0, gt=0)
    """Seconds per unit of the task's checkPointInterval (minutes; tests use seconds)."""
    checkpoint_max_bytes: int = Field(default=MAX_CHECKPOINT_BYTES, gt=0)
    checkpoint_keep: int = Field(default=3, ge=1)
    """Snapshots kept in ``checkpoints/``; older ones are removed."""


class JobDocument(BaseModel):
    """``jobs/<job_id>/job.json``."""

    spec: JobSpec
    node: NodeSettings = Field(default_factory=NodeSettings)
    staged_at: datetime | None = None
    inputs: list[str] = Field(default_factory=list)
    """Work-relative hard links to the site's dataset cache, made by the harvester and
    removed once the job is reported."""


def file_names(doc: JobDocument) -> list[str]:
    """Every file name the job places in, or takes from, its working directory."""
    files = doc.spec.files
    named = [
        files.input,
        files.training_data,
        files.output,
        files.intermediate,
        files.meta,
        files.metrics,
    ]
    return [n for n in named if n is not None] + list(doc.spec.task_files)


class PointRun(BaseModel):
    """One payload run, for the index-th point of the job."""

    index: int
    point_id: str
    exit_code: int | None = None
    started_at: datetime
    ended_at: datetime | None = None
    log_start: int = 0
    log_end: int | None = None


class NodeStatus(BaseModel):
    """``jobs/<job_id>/status.json``, written only by the node agent."""

    state: NodeState
    host: str = ""
    agent_pid: int | None = None
    pid: int | None = None
    gpus: list[str] | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""
    checkpoint_note: str = ""
    """The last problem with a checkpoint snapshot (e.g. over the size limit)."""
    points: list[PointRun] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class HarvesterRecord(BaseModel):
    """``jobs/<job_id>/harvester.json``: what survives a harvester restart."""

    batch_kind: str = ""
    batch_id: str | None = None
    submit_started_at: datetime | None = None
    """Written just before the job is handed to the batch system: a job staged without
    it was never submitted (a restart submits it); with it and no ``batch_id``, the
    submission's outcome is unknown and the job's liveness decides."""
    submitted_at: datetime | None = None
    started_reported: bool = False
    uploaded: list[str] = Field(default_factory=list)
    checkpoint_uploaded: int = 0
    """The newest snapshot (its sequence number) stored centrally, or refused for good."""


class ReportRecord(BaseModel):
    """``jobs/<job_id>/reported.json``: the terminal event was answered; never again."""

    kind: Literal["finished", "failed", "preempted"]
    generation: int
    accepted: bool
    reason: str = ""
    detail: str = ""
    reported_at: datetime
