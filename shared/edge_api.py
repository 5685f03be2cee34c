"""Bodies of the edge protocol (ARCHITECTURE.md §5), shared by the api and the harvester.

The harvester pulls: it heartbeats its free slots, asks for leases, reports job events
and uploads artifacts through presigned URLs. Every job event carries the lease
generation it was issued under, so a late report from a lost lease is recognised and
ignored instead of counted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Arch = Literal["amd64", "ppc64le", "arm64"]
ArtifactKind = Literal["metrics", "log", "meta"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteHeartbeatBody(_Body):
    arch: Arch = "amd64"
    free_slots: int = Field(ge=0)
    total_slots: int = Field(default=0, ge=0)
    version: str = ""


class SiteHeartbeatReply(BaseModel):
    site: str
    accepted_at: datetime


class LeaseRequest(_Body):
    max_jobs: int = Field(default=1, ge=1, le=1000)
    wait_seconds: float = Field(default=10.0, ge=0, le=60)


class PointSpec(BaseModel):
    point_id: str
    index: int
    params: dict[str, object]


class OutputFiles(BaseModel):
    """Names of the files the evaluation container reads and writes (phpo options)."""

    input: str = "input.json"
    training_data: str = "input_ds.json"
    output: str = "output.json"
    meta: str | None = None
    metrics: str | None = None


class JobSpec(BaseModel):
    """Everything a site needs to run one evaluation job without further network."""

    job_id: str
    task_id: str
    owner: str
    segment: str
    segmented: bool = False
    attempt: int
    generation: int
    lease_expires: datetime
    points: list[PointSpec]
    exec: str
    container: str | dict[str, str] | None = None
    """``evaluationContainer``: one image reference, or a map arch -> reference that the
    harvester resolves for its site's arch (the api sends the reference it resolved)."""
    files: OutputFiles = Field(default_factory=OutputFiles)
    training_files: list[str] = Field(default_factory=list)
    task_files: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)


class LeaseReply(BaseModel):
    jobs: list[JobSpec]


class PointResult(_Body):
    point_id: str
    loss: float | list[float] | None = None
    status: int = 0
    message: str = ""


class JobEvent(_Body):
    kind: Literal["started", "heartbeat", "finished", "failed"]
    generation: int
    host: str = ""
    results: list[PointResult] = Field(default_factory=list)
    reason: str = ""


class JobEventReply(BaseModel):
    accepted: bool
    kill: bool = False
    lease_expires: datetime | None = None
    detail: str = ""


class ArtifactUrlRequest(_Body):
    generation: int
    kinds: list[ArtifactKind]


class PresignedUpload(BaseModel):
    kind: ArtifactKind
    key: str
    url: str


class ArtifactUrlReply(BaseModel):
    uploads: list[PresignedUpload]


class ArtifactConfirm(_Body):
    generation: int
    kind: ArtifactKind
    key: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ArtifactConfirmReply(BaseModel):
    artifact_id: str
