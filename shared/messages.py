"""Bus event contracts: one pydantic class per routing key.

Messages are hints for low latency; MongoDB holds the truth (docs/architecture.md §4). A
handler must therefore be idempotent: receiving the same message twice, late, or never
must leave the database in the same state once the reconcile loops have run.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import new_id, utcnow

SCHEMA_VERSION = 1


class Message(BaseModel):
    """Base of every bus event; ``routing_key`` is ``<entity>.<event>``."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    routing_key: ClassVar[str] = ""

    event_id: str = Field(default_factory=new_id)
    occurred_at: datetime = Field(default_factory=utcnow)
    schema_version: int = SCHEMA_VERSION


class TaskSubmitted(Message):
    routing_key: ClassVar[str] = "task.submitted"
    task_id: str


class TaskCancelled(Message):
    routing_key: ClassVar[str] = "task.cancelled"
    task_id: str


class TaskFinished(Message):
    routing_key: ClassVar[str] = "task.finished"
    task_id: str
    status: str


class PointsGenerated(Message):
    routing_key: ClassVar[str] = "points.generated"
    task_id: str
    segment: str
    point_ids: list[str]


class PointEvaluated(Message):
    routing_key: ClassVar[str] = "point.evaluated"
    task_id: str
    segment: str
    point_id: str
    loss: float | list[float]


class PointFailed(Message):
    routing_key: ClassVar[str] = "point.failed"
    task_id: str
    segment: str
    point_id: str
    reason: str


class PointReported(Message):
    routing_key: ClassVar[str] = "point.reported"
    task_id: str
    point_id: str
    step: int
    value: float


class PointPruned(Message):
    """The task's pruner stopped a point: it is evaluated with ``value``, and the job
    still running it is asked to stop."""

    routing_key: ClassVar[str] = "point.pruned"
    task_id: str
    segment: str
    point_id: str
    step: int
    value: float
    job_id: str | None = None


class JobDefined(Message):
    routing_key: ClassVar[str] = "job.defined"
    task_id: str
    job_id: str


class JobAssigned(Message):
    routing_key: ClassVar[str] = "job.assigned"
    task_id: str
    job_id: str
    site: str


class JobLeased(Message):
    routing_key: ClassVar[str] = "job.leased"
    task_id: str
    job_id: str
    site: str
    generation: int


class JobFinished(Message):
    routing_key: ClassVar[str] = "job.finished"
    task_id: str
    job_id: str
    generation: int


class JobFailed(Message):
    routing_key: ClassVar[str] = "job.failed"
    task_id: str
    job_id: str
    reason: str


class JobLost(Message):
    routing_key: ClassVar[str] = "job.lost"
    task_id: str
    job_id: str


class JobPreempted(Message):
    routing_key: ClassVar[str] = "job.preempted"
    task_id: str
    job_id: str


class CheckpointSaved(Message):
    routing_key: ClassVar[str] = "checkpoint.saved"
    task_id: str
    job_id: str
    point_id: str
    key: str


class SiteHeartbeat(Message):
    routing_key: ClassVar[str] = "site.heartbeat"
    site: str


class ArtifactUploaded(Message):
    routing_key: ClassVar[str] = "artifact.uploaded"
    artifact_id: str


class TokenRevoked(Message):
    """Published after the revocation is written: api processes drop cached copies."""

    routing_key: ClassVar[str] = "token.revoked"
    token_id: str


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.routing_key: cls
    for cls in (
        TaskSubmitted,
        TaskCancelled,
        TaskFinished,
        PointsGenerated,
        PointEvaluated,
        PointFailed,
        PointReported,
        PointPruned,
        JobDefined,
        JobAssigned,
        JobLeased,
        JobFinished,
        JobFailed,
        JobLost,
        JobPreempted,
        CheckpointSaved,
        SiteHeartbeat,
        ArtifactUploaded,
        TokenRevoked,
    )
}


class UnknownMessageError(ValueError):
    """A body arrived under a routing key that no contract describes."""


def encode(message: Message) -> bytes:
    return message.model_dump_json().encode()


def decode(routing_key: str, body: bytes) -> Message:
    try:
        cls = MESSAGE_TYPES[routing_key]
    except KeyError:
        raise UnknownMessageError(routing_key) from None
    return cls.model_validate_json(body)
