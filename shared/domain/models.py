"""The aggregates (docs/architecture.md, "Data model") and their state machines.

These are plain pydantic models with no I/O; the store maps them to MongoDB documents
(``id`` <-> ``_id``). Status enums and the allowed transitions live next to each model.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import utcnow
from shared.domain.resources import ComputeClass
from shared.domain.states import StateMachine
from shared.domain.taskconfig import TaskConfig
from shared.edge_api import SiteCapabilities

Loss = float | list[float]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TaskStatus(StrEnum):
    SUBMITTED = "submitted"
    RUNNING = "running"
    FINISHING = "finishing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TASK_STATES: StateMachine[TaskStatus] = StateMachine(
    "task",
    {
        TaskStatus.SUBMITTED: frozenset(
            {TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED}
        ),
        TaskStatus.RUNNING: frozenset(
            {TaskStatus.FINISHING, TaskStatus.FAILED, TaskStatus.CANCELLED}
        ),
        TaskStatus.FINISHING: frozenset(
            {TaskStatus.RUNNING, TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED}
        ),
    },
)
ACTIVE_TASK_STATES = (TaskStatus.SUBMITTED, TaskStatus.RUNNING, TaskStatus.FINISHING)


class Task(_Record):
    id: str
    owner: str
    name: str = ""
    status: TaskStatus = TaskStatus.SUBMITTED
    config: TaskConfig
    files: dict[str, str] = Field(default_factory=dict)
    reason: str = ""
    """Why the task ended; never empty once it has (the store refuses that)."""
    waiting: str = ""
    """Why its jobs wait (set and cleared by the broker), e.g. no live site can run them."""
    best_loss: float | None = None
    best_point_id: str | None = None
    jobs_counted: int | None = None
    """The jobs that count against the job budget (every job but one preempted with a
    checkpoint), kept as the job builder defines them and the api takes a preemption;
    the job builder's periodic pass recounts it. None on records older than the field."""
    open_jobs: list[str] = Field(default_factory=list)
    """The ids of its jobs defined and not yet applied to their points (active, or ended
    with the outcome still to apply): the store adds a job's id just before inserting it
    and drops it just after marking it applied, so its length is the task's active-job
    count without counting jobs; the job builder's periodic pass repairs it."""
    links: dict[str, str] = Field(default_factory=dict)
    """Where else the task is shown, by name (``mlflow``: the experiment's URL)."""
    created: datetime = Field(default_factory=utcnow)
    updated: datetime = Field(default_factory=utcnow)
    version: int = 0


class WarmStartSummary(BaseModel):
    """What a segment's optimiser was told from ``warmStartFrom``, when last built."""

    told: int = 0
    """Points of the earlier tasks told to the optimiser (they are not this task's points
    and do not count against its ``maxPoints``)."""
    skipped: dict[str, int] = Field(default_factory=dict)
    """Points (or tasks) left out, by reason."""


class Segment(_Record):
    id: str
    task_id: str
    name: str
    index: int
    search_space: dict[str, Any]
    space_form: Literal["phpo", "idds"] = "phpo"
    """The form the user wrote, handed to steering containers unchanged."""
    files: list[str] = Field(default_factory=list)
    """A segmented task's training files of this segment (segmentSpecFile ``files``):
    files of ``trainingDS``; records written before ``datasets`` existed hold both."""
    datasets: list[str] = Field(default_factory=list)
    """Whole datasets of this segment (segmentSpecFile ``datasets``)."""
    exhausted: bool = False
    created: datetime = Field(default_factory=utcnow)
    owner: str | None = None
    """The steering process that holds the segment's lease (generates its points)."""
    owner_until: datetime | None = None
    warm_start: WarmStartSummary | None = None
    """Set when the segment's optimiser is built with a warm start."""
    initial_points: list[dict[str, Any]] = Field(default_factory=list)
    """Points evaluated first, as the segment's first indices: the task's
    ``initialPoints`` completed by the space's defaults (and the defaults' own point)."""


class PointStatus(StrEnum):
    UNEVALUATED = "unevaluated"
    PENDING = "pending"
    EVALUATED = "evaluated"
    FAILED = "failed"


POINT_STATES: StateMachine[PointStatus] = StateMachine(
    "point",
    {
        PointStatus.UNEVALUATED: frozenset({PointStatus.PENDING, PointStatus.FAILED}),
        # pending -> unevaluated is a retry after a failed or lost attempt
        PointStatus.PENDING: frozenset(
            {PointStatus.UNEVALUATED, PointStatus.EVALUATED, PointStatus.FAILED}
        ),
    },
)


class CheckpointRef(BaseModel):
    """The newest verified checkpoint of a point: what a retry resumes from."""

    key: str
    size: int
    sha256: str
    job_id: str
    seq: int
    """The snapshot's number within its job; a higher one of the same job is newer."""
    saved: datetime = Field(default_factory=utcnow)


class Point(_Record):
    id: str
    task_id: str
    segment: str
    index: int
    params: dict[str, Any]
    key: str
    status: PointStatus = PointStatus.UNEVALUATED
    loss: Loss | None = None
    attempts: int = 0
    job_id: str | None = None
    last_error: str = ""
    counted_job_id: str | None = None
    pruned_step: int | None = None
    """Set when the task's pruner stopped the point: it counts as evaluated with the
    value it reported at this step."""
    preemptions: int = 0
    """Jobs of this point preempted with a checkpoint; they do not count as attempts."""
    resume: bool = False
    """The next job continues the current attempt from ``checkpoint`` (set by a
    preemption, cleared when that job is defined)."""
    checkpoint: CheckpointRef | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    """Every metric its evaluation reported (``output.json``'s ``metrics``)."""
    parent: str | None = None
    """The point whose checkpoint this one started from (population-based training):
    its ``checkpoint`` was that point's latest when this one was created."""
    created: datetime = Field(default_factory=utcnow)
    evaluated: datetime | None = None


class JobStatus(StrEnum):
    DEFINED = "defined"
    ASSIGNED = "assigned"
    LEASED = "leased"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    LOST = "lost"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"
    """Stopped by the batch system (walltime, scancel) after saving a checkpoint."""


_JOB_END = frozenset({JobStatus.FAILED, JobStatus.LOST, JobStatus.CANCELLED, JobStatus.PREEMPTED})
JOB_STATES: StateMachine[JobStatus] = StateMachine(
    "job",
    {
        JobStatus.DEFINED: frozenset({JobStatus.ASSIGNED, JobStatus.CANCELLED}),
        # assigned -> defined: the site vanished before leasing, assign elsewhere
        JobStatus.ASSIGNED: frozenset({JobStatus.DEFINED, JobStatus.LEASED, JobStatus.CANCELLED}),
        JobStatus.LEASED: _JOB_END | {JobStatus.RUNNING, JobStatus.FINISHED},
        JobStatus.RUNNING: _JOB_END | {JobStatus.FINISHED},
    },
)
ACTIVE_JOB_STATES = (JobStatus.DEFINED, JobStatus.ASSIGNED, JobStatus.LEASED, JobStatus.RUNNING)
TERMINAL_JOB_STATES = (
    JobStatus.FINISHED,
    JobStatus.FAILED,
    JobStatus.LOST,
    JobStatus.CANCELLED,
    JobStatus.PREEMPTED,
)


class Lease(BaseModel):
    """Who holds a job and until when; the generation is the job's own counter."""

    holder: str
    expires: datetime


class PointOutcome(BaseModel):
    point_id: str
    loss: Loss | None = None
    status: int = 0
    message: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Every metric the evaluation reported, checked (finite, bounded)."""


class Job(_Record):
    id: str
    task_id: str
    owner: str
    segment: str
    point_ids: list[str]
    attempt: int
    status: JobStatus = JobStatus.DEFINED
    site: str | None = None
    compute_class: str | None = None
    """The site's compute class the broker chose for it (None: the site declares none)."""
    lease: Lease | None = None
    generation: int = 0
    reason: str = ""
    results: list[PointOutcome] = Field(default_factory=list)
    host: str = ""
    applied: bool = False
    created: datetime = Field(default_factory=utcnow)
    updated: datetime = Field(default_factory=utcnow)
    stamps: dict[str, datetime] = Field(default_factory=dict)
    """When the job last entered each status (by status name); ``running``: first start."""


class Site(_Record):
    id: str
    arch: str = "amd64"
    free_slots: int = 0
    total_slots: int = 0
    version: str = ""
    capabilities: SiteCapabilities | None = None
    """What it declared it can run; None: a harvester that declares nothing."""
    compute_classes: list[ComputeClass] = Field(default_factory=list)
    """The classes of nodes it runs jobs on; empty: a harvester that declares none."""
    last_heartbeat: datetime = Field(default_factory=utcnow)
    assigned_jobs: list[str] = Field(default_factory=list)
    """The ids of the jobs assigned to it and not yet leased, kept by the store with each
    assignment, lease, take-back and cancel (never written by a heartbeat); the broker's
    periodic pass repairs it."""


class Token(_Record):
    id: str
    owner: str
    scopes: list[str]
    hash: str
    created: datetime = Field(default_factory=utcnow)
    expires: datetime | None = None
    revoked: bool = False

    def site_scope(self) -> str | None:
        for scope in self.scopes:
            if scope.startswith("edge:"):
                return scope.removeprefix("edge:")
        return None


class Artifact(_Record):
    id: str
    owner: str
    task_id: str
    job_id: str
    kind: str
    key: str
    size: int
    sha256: str
    verified: bool | None = None
    detail: str = ""
    created: datetime = Field(default_factory=utcnow)
