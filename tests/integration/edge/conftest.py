"""A test double of the central api's edge endpoints, served by a real uvicorn.

It implements the wire contract of shared/edge_api.py the way the harvester relies on
it (bearer token, long-poll leases, generation checks, presigned PUT + confirm), and
records everything it receives so tests can assert on the conversation. The real api
is covered by the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Request, Response

from edge.batch import LocalBatchConfig, open_batch
from edge.config import SiteConfig
from edge.harvester.api import EdgeApiClient
from edge.harvester.daemon import Harvester
from shared.edge_api import (
    ArtifactConfirm,
    ArtifactConfirmAnswer,
    ArtifactConfirmBatch,
    ArtifactConfirmBatchReply,
    ArtifactConfirmReply,
    ArtifactUrlBatch,
    ArtifactUrlBatchReply,
    ArtifactUrlReply,
    ArtifactUrlRequest,
    HeartbeatBatch,
    HeartbeatBatchReply,
    IntermediateReply,
    IntermediateReport,
    IntermediateValue,
    JobArtifactUploads,
    JobEvent,
    JobEventReply,
    JobSpec,
    LeaseReply,
    LeaseRequest,
    PointSpec,
    PresignedUpload,
    ReportBatch,
    ReportBatchReply,
    SiteHeartbeatBody,
    SiteHeartbeatReply,
)

SITE = "test-site"
TOKEN = "site-token-for-tests"

Auth = Annotated[str | None, Header()]


@dataclass
class FakeEdgeApi:
    base_url: str = ""
    queue: list[JobSpec] = field(default_factory=list)
    generations: dict[str, int] = field(default_factory=dict)
    kill: set[str] = field(default_factory=set)
    events: list[tuple[str, JobEvent]] = field(default_factory=list)
    heartbeats: list[SiteHeartbeatBody] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    confirms: list[ArtifactConfirm] = field(default_factory=list)
    held: dict[str, JobSpec] = field(default_factory=dict)
    """Leased jobs whose terminal event was not accepted yet (what a site holds)."""
    batch_heartbeats: bool = True
    """Answer ``/heartbeats`` (False: 404, as an api without it does)."""
    batches: list[int] = field(default_factory=list)
    """The number of heartbeats in each batched request."""
    intermediate: dict[str, list[IntermediateValue]] = field(default_factory=dict)
    """The intermediate values received, per job, in the order sent."""
    batch_reports: bool = True
    """Answer ``/reports`` (False: 404, as an api without it does)."""
    report_batches: list[int] = field(default_factory=list)
    """The number of terminal reports in each batched request."""
    recorded: dict[str, str] = field(default_factory=dict)
    """The terminal kind recorded per job, as the api keeps it: a repeat of it is
    "already recorded", another kind stale."""
    counted: list[str] = field(default_factory=list)
    """Job ids in the order their terminal event was recorded (once each, if all goes well)."""
    batch_artifacts: bool = True
    """Answer ``/sites/{site}/artifacts`` and its ``/confirm`` (False: 404)."""
    requests: list[str] = field(default_factory=list)
    """Every request received, as ``METHOD /path``."""

    def offer(self, spec: JobSpec) -> None:
        self.generations[spec.job_id] = spec.generation
        self.queue.append(spec)

    def requests_to(self, suffix: str, method: str = "POST") -> list[str]:
        return [r for r in self.requests if r.startswith(f"{method} ") and r.endswith(suffix)]

    def events_of(self, job_id: str, kind: str | None = None) -> list[JobEvent]:
        return [e for j, e in self.events if j == job_id and (kind is None or e.kind == kind)]


def build_app(state: FakeEdgeApi) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        state.requests.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    def check(authorization: str | None) -> None:
        if authorization != f"Bearer {TOKEN}":
            raise HTTPException(401, "bad token")

    @app.post("/edge/v1/sites/{site}/heartbeat")
    async def heartbeat(
        site: str, body: SiteHeartbeatBody, authorization: Auth = None
    ) -> SiteHeartbeatReply:
        check(authorization)
        state.heartbeats.append(body)
        return SiteHeartbeatReply(site=site, accepted_at=datetime.now(UTC))

    @app.post("/edge/v1/sites/{site}/leases")
    async def leases(site: str, body: LeaseRequest, authorization: Auth = None) -> LeaseReply:
        check(authorization)
        assert site == SITE
        deadline = asyncio.get_running_loop().time() + min(body.wait_seconds, 1.0)
        while not state.queue and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        jobs, state.queue[:] = state.queue[: body.max_jobs], state.queue[body.max_jobs :]
        state.held.update((job.job_id, job) for job in jobs)
        return LeaseReply(jobs=jobs)

    @app.get("/edge/v1/sites/{site}/leases")
    async def held_leases(site: str, authorization: Auth = None) -> LeaseReply:
        check(authorization)
        return LeaseReply(jobs=list(state.held.values()))

    def current(job_id: str, generation: int) -> bool:
        if job_id not in state.generations:
            raise HTTPException(404, f"no job {job_id}")
        return state.generations[job_id] == generation

    def apply(job_id: str, body: JobEvent) -> JobEventReply:
        accepted = current(job_id, body.generation)
        state.events.append((job_id, body))
        if accepted and body.kind in ("finished", "failed", "preempted"):
            if job_id in state.recorded:
                if state.recorded[job_id] == body.kind:
                    return JobEventReply(accepted=True, detail="already recorded")
                return JobEventReply(accepted=False, kill=True, detail="lease lost")
            state.recorded[job_id] = body.kind
            state.counted.append(job_id)
        if accepted and body.kind in ("finished", "failed"):
            state.held.pop(job_id, None)
        return JobEventReply(
            accepted=accepted,
            kill=job_id in state.kill or not accepted,
            lease_expires=datetime.now(UTC) + timedelta(minutes=5),
        )

    @app.post("/edge/v1/jobs/{job_id}/events")
    async def events(job_id: str, body: JobEvent, authorization: Auth = None) -> JobEventReply:
        check(authorization)
        return apply(job_id, body)

    @app.post("/edge/v1/sites/{site}/reports")
    async def reports(site: str, body: ReportBatch, authorization: Auth = None) -> ReportBatchReply:
        check(authorization)
        if not state.batch_reports:
            raise HTTPException(404, "Not Found")
        state.report_batches.append(len(body.reports))
        replies = []
        for item in body.reports:
            if item.job_id not in state.generations:
                replies.append(JobEventReply(accepted=False, kill=True, detail="no job"))
                continue
            replies.append(apply(item.job_id, item.event()))
        return ReportBatchReply(replies=replies)

    @app.post("/edge/v1/sites/{site}/heartbeats")
    async def heartbeats(
        site: str, body: HeartbeatBatch, authorization: Auth = None
    ) -> HeartbeatBatchReply:
        check(authorization)
        if not state.batch_heartbeats:
            raise HTTPException(404, "Not Found")
        state.batches.append(len(body.beats))
        replies = []
        for beat in body.beats:
            if beat.job_id not in state.generations:
                replies.append(JobEventReply(accepted=False, kill=True, detail="no job"))
                continue
            accepted = current(beat.job_id, beat.generation)
            event = JobEvent(kind=beat.kind, generation=beat.generation, host=beat.host)
            state.events.append((beat.job_id, event))
            replies.append(
                JobEventReply(
                    accepted=accepted,
                    kill=beat.job_id in state.kill or not accepted,
                    lease_expires=datetime.now(UTC) + timedelta(minutes=5),
                )
            )
        return HeartbeatBatchReply(replies=replies)

    @app.post("/edge/v1/jobs/{job_id}/intermediate")
    async def intermediate(
        job_id: str, body: IntermediateReport, authorization: Auth = None
    ) -> IntermediateReply:
        check(authorization)
        accepted = current(job_id, body.generation)
        if accepted:
            state.intermediate.setdefault(job_id, []).extend(body.values)
        return IntermediateReply(accepted=accepted, stored=len(body.values) if accepted else 0)

    def presign(job_id: str, body: ArtifactUrlRequest) -> ArtifactUrlReply:
        if not current(job_id, body.generation):
            raise HTTPException(409, "stale lease")
        return ArtifactUrlReply(
            uploads=[
                PresignedUpload(
                    kind=kind,
                    key=f"alice/task-1/{job_id}/{kind}",
                    url=f"{state.base_url}/upload/alice/task-1/{job_id}/{kind}?sig=x",
                )
                for kind in body.kinds
            ]
        )

    @app.post("/edge/v1/jobs/{job_id}/artifacts")
    async def artifacts(
        job_id: str, body: ArtifactUrlRequest, authorization: Auth = None
    ) -> ArtifactUrlReply:
        check(authorization)
        return presign(job_id, body)

    @app.post("/edge/v1/sites/{site}/artifacts")
    async def artifact_batch(
        site: str, body: ArtifactUrlBatch, authorization: Auth = None
    ) -> ArtifactUrlBatchReply:
        check(authorization)
        if not state.batch_artifacts:
            raise HTTPException(404, "Not Found")
        replies = []
        for item in body.jobs:
            request = ArtifactUrlRequest(generation=item.generation, kinds=item.kinds)
            try:
                replies.append(JobArtifactUploads(uploads=presign(item.job_id, request).uploads))
            except HTTPException as exc:
                replies.append(JobArtifactUploads(detail=str(exc.detail)))
        return ArtifactUrlBatchReply(replies=replies)

    @app.put("/upload/{key:path}")
    async def upload(key: str, request: Request, sig: str = "") -> Response:
        if "authorization" in request.headers or sig != "x":
            raise HTTPException(403, "presigned uploads carry no bearer token")
        state.uploads[key] = await request.body()
        return Response(status_code=200)

    def stored(body: ArtifactConfirm) -> ArtifactConfirmReply:
        data = state.uploads.get(body.key)
        if (
            data is None
            or len(data) != body.size
            or hashlib.sha256(data).hexdigest() != body.sha256
        ):
            raise HTTPException(422, "size or sha256 does not match the stored object")
        state.confirms.append(body)
        return ArtifactConfirmReply(artifact_id=f"a-{len(state.confirms)}")

    @app.post("/edge/v1/jobs/{job_id}/artifacts/confirm")
    async def confirm(
        job_id: str, body: ArtifactConfirm, authorization: Auth = None
    ) -> ArtifactConfirmReply:
        check(authorization)
        return stored(body)

    @app.post("/edge/v1/sites/{site}/artifacts/confirm")
    async def confirm_batch(
        site: str, body: ArtifactConfirmBatch, authorization: Auth = None
    ) -> ArtifactConfirmBatchReply:
        check(authorization)
        if not state.batch_artifacts:
            raise HTTPException(404, "Not Found")
        replies = []
        for item in body.confirms:
            try:
                answer = stored(ArtifactConfirm.model_validate(item.model_dump(exclude={"job_id"})))
                replies.append(ArtifactConfirmAnswer(artifact_id=answer.artifact_id))
            except HTTPException as exc:
                replies.append(ArtifactConfirmAnswer(detail=str(exc.detail)))
        return ArtifactConfirmBatchReply(replies=replies)

    return app


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeEdgeApi]:
    state = FakeEdgeApi()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    state.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        build_app(state), lifespan="off", log_level="warning", ws="none", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield state
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
def make_spec() -> Callable[..., JobSpec]:
    counter = iter(range(1, 1000))

    def make(exec_: str, **fields: Any) -> JobSpec:
        n = next(counter)
        values: dict[str, Any] = {
            "job_id": f"job-{n}",
            "task_id": "task-1",
            "owner": "alice",
            "segment": "main",
            "attempt": 1,
            "generation": 1,
            "lease_expires": datetime.now(UTC) + timedelta(minutes=5),
            "points": [PointSpec(point_id=f"point-{n}", index=0, params={"lr": 0.01})],
            "exec": exec_,
        }
        values.update(fields)
        return JobSpec.model_validate(values)

    return make


@pytest.fixture
def site_config(fake_api: FakeEdgeApi, tmp_path: Path) -> SiteConfig:
    return SiteConfig(
        site=SITE,
        api_url=fake_api.base_url,
        token=TOKEN,
        root=tmp_path / "edge-root",
        slots=2,
        poll_interval=0.1,
        heartbeat_interval=0.3,
        lost_after_intervals=20,
        kill_grace_seconds=2.0,
        lease_wait_seconds=0.5,
    )


HarvesterFactory = Callable[[], Harvester]


@pytest.fixture
async def make_harvester(site_config: SiteConfig) -> AsyncIterator[HarvesterFactory]:
    """Harvesters as a restarted daemon would build them: fresh client, fresh adapter."""
    clients: list[EdgeApiClient] = []

    def make() -> Harvester:
        api = EdgeApiClient(
            site_config.base_url, SITE, site_config.api_token, attempts=3, backoff=0.05
        )
        clients.append(api)
        return Harvester(site_config, api, open_batch(LocalBatchConfig()))

    yield make
    for client in clients:
        await client.aclose()
