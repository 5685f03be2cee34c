"""The monitor's read API bodies (``/monitor/api``).

Chart series are plain JSON objects described where they are computed
(:mod:`services.monitor.series`); everything else is typed here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Counts(BaseModel):
    max_points: int | None
    """The task's whole plan (maxPoints per segment times its segments); None for an
    online study, whose maxPoints is a cap, not a plan."""
    points: int
    unevaluated: int
    pending: int
    evaluated: int
    failed: int
    active_jobs: int


class TaskRow(BaseModel):
    id: str
    name: str
    kind: Literal["task", "study"]
    status: str
    reason: str
    waiting: str
    """Why an active task's jobs wait (no live site can run them), or empty."""
    health: Literal["ok", "warning", "failed"]
    """What the status colour should say: a task that ended ``done`` with every point
    failed is not a success, whatever its status."""
    note: str
    created: datetime
    updated: datetime
    progress: Counts | None
    """None while the monitor is still counting a large task's points."""
    best_loss: float | None
    best_point_id: str | None
    objectives: int


class SegmentRow(BaseModel):
    name: str
    counts: dict[str, int]


class TaskDetail(TaskRow):
    owner: str
    segments: list[SegmentRow]
    directions: list[str]
    params: list[str]
    pruner: str
    online: bool
    config: dict[str, Any]


class PointRow(BaseModel):
    id: str
    segment: str
    index: int
    status: str
    loss: float | list[float] | None
    params: dict[str, Any]
    attempts: int
    preemptions: int
    pruned_step: int | None
    created: datetime | None
    evaluated: datetime | None
    seconds: float | None
    job_id: str | None
    site: str | None
    host: str
    error: str
    log_url: str | None
    metrics_url: str | None


class PointsPage(BaseModel):
    rows: list[PointRow]
    total: int
    next_cursor: str | None
    params: list[str]


class ArtifactRow(BaseModel):
    id: str
    point_id: str
    job_id: str
    kind: str
    name: str
    size: int
    verified: bool | None
    detail: str
    created: datetime
    url: str


class ArtifactsPage(BaseModel):
    rows: list[ArtifactRow]
    next_after: str | None


class JobRow(BaseModel):
    id: str
    point_ids: list[str]
    segment: str
    attempt: int
    status: str
    site: str | None
    host: str
    reason: str
    created: datetime
    updated: datetime


class JobsView(BaseModel):
    counts: dict[str, int]
    jobs: list[JobRow]


class PointDetail(BaseModel):
    point: PointRow
    jobs: list[JobRow]
    artifacts: list[ArtifactRow]
    intermediate: dict[str, list[float]]
    metrics: dict[str, float] = Field(default_factory=dict)
    """Every metric the point's evaluation reported."""


class LogTail(BaseModel):
    job_id: str
    size: int
    text: str
    truncated: bool


class SiteRow(BaseModel):
    id: str
    arch: str
    version: str
    free_slots: int
    busy_slots: int
    total_slots: int
    last_heartbeat: datetime
    alive: bool
    jobs_in_flight: int
    your_jobs_in_flight: int
    layouts: list[str]
    extra: dict[str, Any]
    occupancy: list[tuple[float, int, int]]
    """(unix time, busy slots, total slots) samples, oldest first."""


class Me(BaseModel):
    owner: str
