"""The neutral record of a task for exports: everything an Optuna study or an MLflow
experiment is written from, in one document (``GET /api/v1/tasks/{id}/record``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.domain.models import Loss, PointStatus, TaskStatus

RECORD_SCHEMA = 1


class SegmentRecord(BaseModel):
    name: str
    index: int
    search_space: dict[str, Any]
    """As stored (the form the user wrote); :func:`shared.searchspace.parse_search_space`
    reads it."""


class PointRecord(BaseModel):
    id: str
    segment: str
    index: int
    params: dict[str, Any]
    status: PointStatus
    loss: Loss | None = None
    attempts: int = 0
    last_error: str = ""
    pruned_step: int | None = None
    intermediate: dict[int, float] = Field(default_factory=dict)
    job_id: str | None = None
    """The attempt that counted (evaluated points), else the latest one."""
    site: str | None = None
    host: str = ""
    created: datetime
    started: datetime | None = None
    """When that attempt's payload started."""
    evaluated: datetime | None = None
    metrics_key: str | None = None
    """The verified metrics tarball of that attempt, if any."""
    metrics_url: str | None = None
    """A presigned download of it (in the api's answer only)."""


class TaskRecord(BaseModel):
    schema_version: int = RECORD_SCHEMA
    id: str
    name: str
    owner: str
    status: TaskStatus
    reason: str = ""
    online: bool = False
    segmented: bool = False
    created: datetime
    updated: datetime
    directions: list[Literal["minimize", "maximize"]]
    failed_point_loss: float
    segments: list[SegmentRecord]
    points: list[PointRecord]
