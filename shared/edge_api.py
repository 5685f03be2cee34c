"""Bodies of the edge protocol (docs/architecture.md, "Edge protocol"), shared by the api
and the harvester.

The harvester pulls: it heartbeats its free slots, asks for leases, reports job events
and uploads artifacts through presigned URLs. Every job event carries the lease
generation it was issued under, so a late report from a lost lease is recognised and
ignored instead of counted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.bounds import Count, Int64
from shared.domain.resources import ComputeClass

Arch = Literal["amd64", "ppc64le", "arm64"]
ArtifactKind = Literal["metrics", "log", "meta"]


MAX_SLOTS = 1_000_000
MAX_TEXT = 65_536
"""Longest reason or message a site may send (the harvester keeps 4,000 characters)."""
MAX_OBJECTIVES = 16
MAX_WIRE_METRICS = 1_000
"""Metrics one result may carry on the wire; the api keeps at most
:data:`shared.domain.metrics.MAX_METRICS` and fails a point that reports more."""
MAX_STEP = 10**12
"""Steps of a learning curve (Optuna requires them >= 0)."""
MAX_SEQ = 10**9


class _Body(BaseModel):
    """What a site sends: every number bounded (8 bytes at most where stored), no NaN
    or infinity, every string capped."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SiteCapabilities(_Body):
    """What a site can run, declared in every heartbeat (from its ``[runtime]``); the
    broker sends a site only jobs it can run."""

    runtime: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_-]*$")
    """The runtime kind that starts its payloads (``process``, ``bwrap``, ``apptainer``...)."""
    image_schemes: list[str] = Field(default_factory=list, max_length=32)
    """The image references it runs: ``path`` for a local image file or directory, or
    a registry scheme its harvester pulls from (``docker``, ``oras``, ...). Empty: it
    runs no image."""
    ignores_images: bool = False
    """It runs a job that names an image on the host's software instead (the site
    admin's ``ignore_image``)."""
    needs_image: bool = False
    """It runs only jobs that name an image (a container runtime with no default image)."""


class SiteHeartbeatBody(_Body):
    arch: Arch = "amd64"
    free_slots: int = Field(ge=0, le=MAX_SLOTS)
    total_slots: int = Field(default=0, ge=0, le=MAX_SLOTS)
    version: str = Field(default="", max_length=200)
    capabilities: SiteCapabilities | None = None
    """None from a harvester that declares nothing: it is sent any job, as before."""
    compute_classes: list[ComputeClass] = Field(default_factory=list, max_length=32)
    """Its classes of nodes; empty: it is sent only jobs that ask for no resources."""


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
    intermediate: str = "intermediate.jsonl"
    meta: str | None = None
    metrics: str | None = None


class CheckpointConfig(BaseModel):
    """What the node agent snapshots, and how a restored checkpoint is handed back
    (the task's checkPointToSave, checkPointToLoad and checkPointInterval)."""

    save: list[str] = Field(min_length=1)
    """Files and directories under the work directory, relative to it."""
    load: str | None = None
    """Place a restored tarball under this name instead of extracting it."""
    interval: int = Field(default=5, ge=1)
    """Between snapshots, in the site's unit (minutes unless a test says otherwise)."""
    final: bool = False
    """Snapshot once more when the payload has finished, and upload that snapshot: later
    points start from it (population-based training)."""


class CheckpointDownload(BaseModel):
    """The latest checkpoint of the job's point, to restore before the payload starts."""

    url: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class StagedFile(BaseModel):
    """One file of an uploaded dataset: where its parts are and what the whole must be."""

    name: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    parts: list[str] = Field(min_length=1)
    """Presigned GET URLs of its stored parts, in order."""


class DatasetInput(BaseModel):
    """A dataset the job reads (``trainingDS``, or a segment's ``datasets``)."""

    name: str
    files: list[StagedFile] | None = None
    """The uploaded dataset's files (only those ``select`` names); None when the user
    uploaded no such dataset: the site may hold it (its ``[datasets.present]``), else
    the payload gets the name itself, as before datasets existed."""
    select: list[str] | None = None
    """A segment's ``files``: only these files of the dataset; None: every file."""


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
    compute_class: str | None = None
    """The class of the site's nodes the broker chose for the job."""
    expected_seconds: float | None = Field(default=None, gt=0)
    """How long the job is expected to run, when known: the mean run time of the
    task's finished jobs on this site and class. A late-binding worker starts the
    longest expected job first and none that cannot end within its walltime."""
    container: str | dict[str, str] | None = None
    """``evaluationContainer``: one image reference, or a map arch -> reference that the
    harvester resolves for its site's arch (the api sends the reference it resolved)."""
    files: OutputFiles = Field(default_factory=OutputFiles)
    training_files: list[str] = Field(default_factory=list)
    """What ``input_ds.json`` and ``%IN_DATA`` list: the names as the task gave them;
    the harvester replaces them with the paths of the staged files."""
    datasets: list[DatasetInput] = Field(default_factory=list)
    task_files: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    checkpoint_config: CheckpointConfig | None = None
    checkpoint: CheckpointDownload | None = None


class LeaseReply(BaseModel):
    jobs: list[JobSpec]


class PointResult(_Body):
    point_id: str = Field(max_length=1_000)
    loss: float | list[float] | None = Field(default=None)
    status: Int64 = 0
    message: str = Field(default="", max_length=MAX_TEXT)
    metrics: dict[str, object] | None = Field(default=None, max_length=MAX_WIRE_METRICS)
    """``output.json``'s ``metrics`` as the payload wrote them; the api checks them
    (:mod:`shared.domain.metrics`) and fails the point with the reason if they are unusable."""

    @field_validator("loss")
    @classmethod
    def _objectives(cls, value: float | list[float] | None) -> float | list[float] | None:
        if isinstance(value, list) and not 1 <= len(value) <= MAX_OBJECTIVES:
            raise ValueError(f"a list loss holds 1 to {MAX_OBJECTIVES} numbers")
        return value


class JobEvent(_Body):
    kind: Literal["started", "heartbeat", "finished", "failed", "preempted"]
    generation: Count
    host: str = Field(default="", max_length=1_000)
    results: list[PointResult] = Field(default_factory=list, max_length=10_000)
    reason: str = Field(default="", max_length=MAX_TEXT)


class JobEventReply(BaseModel):
    accepted: bool
    kill: bool = False
    lease_expires: datetime | None = None
    detail: str = ""


MAX_BATCH = 10_000


class SiteJobBeat(_Body):
    """One job's ``started`` or ``heartbeat`` inside a batch."""

    job_id: str = Field(min_length=1, max_length=1_000)
    kind: Literal["started", "heartbeat"] = "heartbeat"
    generation: Count
    host: str = Field(default="", max_length=1_000)


class HeartbeatBatch(_Body):
    """Every job heartbeat a scan has due, in one request."""

    beats: list[SiteJobBeat] = Field(min_length=1, max_length=MAX_BATCH)


class HeartbeatBatchReply(BaseModel):
    replies: list[JobEventReply]
    """One per beat, in order; a job not at this site is ``kill`` with the reason."""


MAX_REPORTS = 1_000
"""Terminal reports one batch may carry; a harvester splits a larger scan's."""


class SiteJobReport(_Body):
    """One ended job's terminal event inside a batch: a :class:`JobEvent` of kind
    ``finished``, ``failed`` or ``preempted``, with the job it is about."""

    job_id: str = Field(min_length=1, max_length=1_000)
    kind: Literal["finished", "failed", "preempted"]
    generation: Count
    host: str = Field(default="", max_length=1_000)
    results: list[PointResult] = Field(default_factory=list, max_length=10_000)
    reason: str = Field(default="", max_length=MAX_TEXT)

    @classmethod
    def of(cls, job_id: str, event: JobEvent) -> SiteJobReport:
        if event.kind not in ("finished", "failed", "preempted"):
            raise ValueError(f"a {event.kind} event is not a terminal report")
        return cls(
            job_id=job_id,
            kind=event.kind,
            generation=event.generation,
            host=event.host,
            results=event.results,
            reason=event.reason,
        )

    def event(self) -> JobEvent:
        return JobEvent(
            kind=self.kind,
            generation=self.generation,
            host=self.host,
            results=self.results,
            reason=self.reason,
        )


class ReportBatch(_Body):
    """The terminal events of every job a scan found ended, in one request."""

    reports: list[SiteJobReport] = Field(min_length=1, max_length=MAX_REPORTS)


class ReportBatchReply(BaseModel):
    replies: list[JobEventReply]
    """One per report, in order, each what ``/jobs/{id}/events`` would have answered;
    a job not at this site is ``kill`` with the reason (the single call's 404)."""


class IntermediateValue(_Body):
    """One line of the payload's intermediate-values file."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    step: int = Field(ge=0, le=MAX_STEP)
    value: float


class IntermediateReport(_Body):
    """New lines of a job's intermediate-values file, in the order written."""

    generation: Count
    point_id: str | None = Field(default=None, max_length=1_000)
    """Default: the job's only point."""
    values: list[IntermediateValue] = Field(min_length=1, max_length=1000)


class IntermediateReply(BaseModel):
    accepted: bool
    stored: int = 0
    """How many values were new; a repeated step keeps its first value."""
    kill: bool = False
    detail: str = ""
    """Why the job should stop (``pruned at step N``), or why nothing was stored."""


class ArtifactUrlRequest(_Body):
    generation: Count
    kinds: list[ArtifactKind] = Field(max_length=10)


class PresignedUpload(BaseModel):
    kind: ArtifactKind
    key: str
    url: str


class ArtifactUrlReply(BaseModel):
    uploads: list[PresignedUpload]


class ArtifactConfirm(_Body):
    generation: Count
    kind: ArtifactKind
    key: str = Field(max_length=2_000)
    size: Count
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ArtifactConfirmReply(BaseModel):
    artifact_id: str


class JobArtifactUrls(_Body):
    """One job's :class:`ArtifactUrlRequest` inside a batch."""

    job_id: str = Field(min_length=1, max_length=1_000)
    generation: Count
    kinds: list[ArtifactKind] = Field(max_length=10)


class ArtifactUrlBatch(_Body):
    """Upload URLs for the artifacts of every job a scan reports, in one request."""

    jobs: list[JobArtifactUrls] = Field(min_length=1, max_length=MAX_REPORTS)


class JobArtifactUploads(BaseModel):
    uploads: list[PresignedUpload] = Field(default_factory=list)
    detail: str = ""
    """Why there are none: what the single call would have refused (lease lost, no
    such job at this site)."""


class ArtifactUrlBatchReply(BaseModel):
    replies: list[JobArtifactUploads]
    """One per job, in order."""


class JobArtifactConfirm(ArtifactConfirm):
    """One :class:`ArtifactConfirm` inside a batch."""

    job_id: str = Field(min_length=1, max_length=1_000)


class ArtifactConfirmBatch(_Body):
    confirms: list[JobArtifactConfirm] = Field(min_length=1, max_length=3 * MAX_REPORTS)


class ArtifactConfirmAnswer(BaseModel):
    artifact_id: str | None = None
    """None: not recorded, ``detail`` says why (the single call's 4xx)."""
    detail: str = ""


class ArtifactConfirmBatchReply(BaseModel):
    replies: list[ArtifactConfirmAnswer]
    """One per confirm, in order."""


class CheckpointUrlRequest(_Body):
    """Asks where to upload snapshot ``seq`` of the job, declaring what will arrive."""

    generation: Count
    seq: int = Field(ge=1, le=MAX_SEQ)
    size: Count
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class CheckpointUpload(BaseModel):
    key: str
    url: str


class CheckpointConfirm(_Body):
    generation: Count
    seq: int = Field(ge=1, le=MAX_SEQ)
    key: str = Field(max_length=2_000)
    size: Count
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class CheckpointConfirmReply(BaseModel):
    stored: bool
    """False when a newer checkpoint of the point was already recorded."""
