"""REST bodies of the user-facing api (``/api/v1``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.models import (
    JobStatus,
    Loss,
    PointOutcome,
    PointStatus,
    TaskStatus,
    WarmStartSummary,
)
from shared.domain.taskconfig import TaskConfig

MAX_FILES = 1_000
"""Files of the submitting directory that travel with a task (their size is capped too)."""


class TaskSubmission(BaseModel):
    """A task as ``hpo submit`` sends it: the phpo config plus the submitting dir's files.

    The search space is given inline (``searchSpace``) or as the content of the file
    that ``config.searchSpaceFile`` names, among ``files``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(default="", max_length=200)
    config: TaskConfig
    search_space: dict[str, Any] | list[Any] | None = Field(default=None, alias="searchSpace")
    files: dict[str, str] = Field(default_factory=dict, max_length=MAX_FILES)


class SegmentProgress(BaseModel):
    segment: str
    max_points: int
    """The segment's own ``maxPoints``."""
    points: int
    unevaluated: int
    pending: int
    evaluated: int
    failed: int


class Progress(BaseModel):
    max_points: int | None
    """Points the task plans in all (``maxPoints`` per segment times its segments);
    None for an online study, whose trial count has no planned end."""
    points: int
    unevaluated: int
    pending: int
    evaluated: int
    failed: int
    active_jobs: int
    jobs: int
    segments: list[SegmentProgress] = Field(default_factory=list)
    """Per segment, in segment order (one ``main`` entry for an unsegmented task); empty
    for an online study."""


class BestPoint(BaseModel):
    point_id: str
    loss: float
    params: dict[str, Any]
    metrics: dict[str, float] = Field(default_factory=dict)


class ParetoPoint(BaseModel):
    point_id: str
    segment: str
    loss: list[float]
    params: dict[str, Any]


class TaskView(BaseModel):
    id: str
    name: str
    owner: str
    status: TaskStatus
    reason: str
    config: TaskConfig
    created: datetime
    updated: datetime
    progress: Progress
    warnings: list[str] = Field(default_factory=list)
    """One line per phpo option given that has no effect here."""
    waiting: str = ""
    """Why the task's jobs wait instead of running (e.g. no live site can run its
    image); empty when nothing holds them back."""
    best: BestPoint | None = None
    """Single-objective tasks: the best evaluated point."""
    pareto_front: list[ParetoPoint] | None = None
    """Multi-objective tasks (several ``steering.directions``): the evaluated points no
    other evaluated point of their segment dominates."""
    warm_start: WarmStartSummary | None = None
    """With ``warmStartFrom``: the earlier tasks' points told to the optimisers (summed over
    the segments whose optimiser has been built) and those skipped, by reason."""
    links: dict[str, str] = Field(default_factory=dict)
    """Where else the task is shown: ``mlflow``, its experiment on the central MLflow
    server, when the storage service mirrors tasks there (``HPO_MLFLOW_URL``)."""


class TaskSummary(BaseModel):
    id: str
    name: str
    status: TaskStatus
    created: datetime
    best_loss: float | None
    reason: str = ""
    out_ds: str | None = None
    """phpo's ``outDS`` of the task."""


class PointView(BaseModel):
    id: str
    segment: str
    index: int
    params: dict[str, Any]
    status: PointStatus
    loss: Loss | None
    attempts: int
    preemptions: int = 0
    """Jobs preempted with a checkpoint and resumed; they used no attempt."""
    last_error: str
    pruned_step: int | None = None
    parent: str | None = None
    """The point whose checkpoint this one started from (``algorithm: pbt``)."""
    metrics: dict[str, float] = Field(default_factory=dict)
    """Every metric its evaluation reported."""


class JobView(BaseModel):
    id: str
    segment: str
    point_ids: list[str]
    attempt: int
    status: JobStatus
    site: str | None
    host: str
    reason: str
    results: list[PointOutcome]
    created: datetime
    updated: datetime


class ArtifactView(BaseModel):
    job_id: str
    kind: str
    key: str
    size: int
    verified: bool | None
    url: str


class WhoAmI(BaseModel):
    owner: str
    scopes: list[str]
    token_id: str
