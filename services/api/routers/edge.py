"""``/edge/v1``: the pull protocol of the site harvesters (docs/architecture.md, "Edge
protocol").

An edge token (scope ``edge:<site>``) sees only its site and its site's jobs; every
other job is a 404. Job events carry the lease generation: a report from a lease that
has been lost or superseded is answered ``accepted: false, kill: true`` and changes
nothing.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from fastapi import APIRouter, HTTPException, status

from services.api.deps import Ctx, EdgeToken, Settings, Wakeups
from services.api.jobspec import build_spec
from services.api.results import outcome_of
from services.api.unavailable import publish_hint
from services.api.wakeups import wait_for_wakeup
from services.storage.policy import UPLOAD_EXPIRY, artifact_key
from shared.clock import utcnow
from shared.domain.models import (
    ACTIVE_TASK_STATES,
    Artifact,
    Job,
    JobStatus,
    Site,
)
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
    JobArtifactUploads,
    JobEvent,
    JobEventReply,
    LeaseReply,
    LeaseRequest,
    PresignedUpload,
    ReportBatch,
    ReportBatchReply,
    SiteHeartbeatBody,
    SiteHeartbeatReply,
)
from shared.messages import (
    ArtifactUploaded,
    JobFailed,
    JobFinished,
    JobLeased,
    JobPreempted,
    SiteHeartbeat,
)

router = APIRouter(prefix="/edge/v1", tags=["edge"])
_LIVE = (JobStatus.LEASED, JobStatus.RUNNING)


def _site_of(token: EdgeToken, site: str) -> str:
    if token.site_scope() != site:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token is not for site {site}")
    return site


async def job_of(ctx: Ctx, token: EdgeToken, job_id: str) -> Job:
    job = await ctx.store.jobs.get(job_id)
    if job is None or job.site is None or job.site != token.site_scope():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id} at this site")
    return job


@router.post("/sites/{site}/heartbeat")
async def heartbeat(
    site: str, body: SiteHeartbeatBody, ctx: Ctx, token: EdgeToken
) -> SiteHeartbeatReply:
    _site_of(token, site)
    record = Site(
        id=site,
        arch=body.arch,
        free_slots=body.free_slots,
        total_slots=body.total_slots,
        version=body.version,
        capabilities=body.capabilities,
        compute_classes=body.compute_classes,
    )
    await ctx.store.sites.heartbeat(record)
    await ctx.bus.publish(SiteHeartbeat(site=site))
    return SiteHeartbeatReply(site=site, accepted_at=record.last_heartbeat)


@router.post("/sites/{site}/leases")
async def lease(
    site: str,
    body: LeaseRequest,
    ctx: Ctx,
    token: EdgeToken,
    settings: Settings,
    wakeups: Wakeups,
) -> LeaseReply:
    _site_of(token, site)
    deadline = time.monotonic() + body.wait_seconds
    woken = body.wait_seconds > 0 and await wakeups.start()
    pause = settings.lease_recheck_seconds if woken else settings.lease_poll_interval
    jobs: list[Job] = []
    while True:
        wakeup = wakeups.current(site)  # before the read: a job assigned after it wakes us
        while len(jobs) < body.max_jobs:
            expires = utcnow() + timedelta(seconds=settings.lease_seconds)
            job = await ctx.store.jobs.lease_next(site, holder=site, expires=expires)
            if job is None:
                break
            jobs.append(job)
        remaining = deadline - time.monotonic()
        if jobs or remaining <= 0:
            break
        await wait_for_wakeup(wakeup, min(pause, remaining))
    specs = []
    arch = await ctx.store.sites.get(site) or None
    means = await ctx.store.runtimes.means(list({j.task_id for j in jobs})) if jobs else {}
    for job in jobs:
        spec = await build_spec(
            ctx.store, ctx.constants, job, arch.arch if arch else "amd64", ctx.artifacts, means
        )
        specs.append(spec)
        await publish_hint(
            ctx.bus,
            JobLeased(task_id=job.task_id, job_id=job.id, site=site, generation=job.generation),
        )
    return LeaseReply(jobs=specs)


@router.get("/sites/{site}/leases")
async def held_leases(site: str, ctx: Ctx, token: EdgeToken) -> LeaseReply:
    """The jobs this site holds a lease on, as they were handed out.

    A harvester that dies between receiving a lease and writing the job to its shared
    filesystem asks this at start and stages what it lost, under the same lease
    generation, instead of letting the lease expire and the point lose an attempt.
    """
    _site_of(token, site)
    record = await ctx.store.sites.get(site)
    arch = record.arch if record else "amd64"
    return LeaseReply(
        jobs=[
            await build_spec(ctx.store, ctx.constants, job, arch, ctx.artifacts)
            for job in await ctx.store.jobs.live_at_site(site)
        ]
    )


async def kill_reason(ctx: Ctx, job: Job) -> str:
    """Why the site should stop ``job`` now; "" to let it run."""
    if job.status is JobStatus.CANCELLED:
        return job.reason or "the job was cancelled"
    task = await ctx.store.tasks.get(job.task_id)
    if task is None or task.status not in ACTIVE_TASK_STATES:
        return f"the task is {task.status.value if task else 'gone'}"
    for point_id in job.point_ids:
        point = await ctx.store.points.get(point_id)
        if point is not None and point.pruned_step is not None and point.counted_job_id == job.id:
            return f"pruned at step {point.pruned_step}"
    return ""


STALE = JobEventReply(accepted=False, kill=True, detail="lease lost or superseded")


async def _beat(
    ctx: Ctx, settings: Settings, job: Job, generation: int, host: str
) -> JobEventReply:
    """A ``started`` or ``heartbeat``: extend the lease, say whether to stop."""
    if generation != job.generation:
        return STALE
    expires = utcnow() + timedelta(seconds=settings.lease_seconds)
    if not await ctx.store.jobs.extend_lease(
        job.id, job.generation, expires, running=True, host=host
    ):
        return STALE
    reason = await kill_reason(ctx, job)
    return JobEventReply(accepted=True, kill=bool(reason), lease_expires=expires, detail=reason)


@router.post("/sites/{site}/heartbeats")
async def heartbeats(
    site: str, body: HeartbeatBatch, ctx: Ctx, token: EdgeToken, settings: Settings
) -> HeartbeatBatchReply:
    """Every heartbeat of a harvester's scan in one request, answered in order."""
    _site_of(token, site)
    replies = []
    for beat in body.beats:
        job = await _job_at(ctx, beat.job_id, site)
        if job is None:
            replies.append(_not_here(beat.job_id))
            continue
        replies.append(await _beat(ctx, settings, job, beat.generation, beat.host))
    return HeartbeatBatchReply(replies=replies)


async def _job_at(ctx: Ctx, job_id: str, site: str) -> Job | None:
    """A batch item's job, None if there is none at ``site`` (the single call's 404)."""
    job = await ctx.store.jobs.get(job_id)
    return job if job is not None and job.site == site else None


def _not_here(job_id: str) -> JobEventReply:
    """A batch's answer for a job the single call would answer 404."""
    return JobEventReply(accepted=False, kill=True, detail=f"no job {job_id} at this site")


REPORTS_AT_ONCE = 8
"""Reports of one batch applied concurrently (each is a few store round trips)."""


@router.post("/sites/{site}/reports")
async def reports(
    site: str, body: ReportBatch, ctx: Ctx, token: EdgeToken, settings: Settings
) -> ReportBatchReply:
    """The terminal events of a harvester's scan in one request, answered in order, each
    as :func:`job_event` answers it. Reports of one job are applied in the order sent."""
    _site_of(token, site)
    replies: list[JobEventReply | None] = [None] * len(body.reports)
    by_job: dict[str, list[int]] = {}
    for index, item in enumerate(body.reports):
        by_job.setdefault(item.job_id, []).append(index)
    limit = asyncio.Semaphore(REPORTS_AT_ONCE)

    async def apply_all(job_id: str, indices: list[int]) -> None:
        async with limit:
            for index in indices:
                job = await _job_at(ctx, job_id, site)
                if job is None:
                    replies[index] = _not_here(job_id)
                    continue
                replies[index] = await apply_event(ctx, settings, job, body.reports[index].event())

    await asyncio.gather(*(apply_all(job_id, indices) for job_id, indices in by_job.items()))
    return ReportBatchReply(replies=[r for r in replies if r is not None])


@router.post("/jobs/{job_id}/events")
async def job_event(
    job_id: str, body: JobEvent, ctx: Ctx, token: EdgeToken, settings: Settings
) -> JobEventReply:
    return await apply_event(ctx, settings, await job_of(ctx, token, job_id), body)


async def apply_event(ctx: Ctx, settings: Settings, job: Job, body: JobEvent) -> JobEventReply:
    """One job event of a site the job belongs to: the lease generation checked, a
    heartbeat's lease extended, a terminal event recorded once (a repeat is "already
    recorded"), with its run time learnt, its counters and its message on the bus."""
    store = ctx.store
    stale = STALE
    if body.generation != job.generation:
        return stale
    if body.kind in ("started", "heartbeat"):
        return await _beat(ctx, settings, job, body.generation, body.host)
    if job.status not in _LIVE:
        # A repeated terminal report (harvester restarted after reporting) is fine.
        same = {
            "finished": JobStatus.FINISHED,
            "failed": JobStatus.FAILED,
            "preempted": JobStatus.PREEMPTED,
        }[body.kind]
        if job.status is same:
            return JobEventReply(accepted=True, detail="already recorded")
        return stale
    if body.kind == "finished":
        task = await ctx.constants.task(job.task_id)
        config = task.config if task is not None else None
        results = [outcome_of(r, config) for r in body.results] if config else []
        if await store.jobs.finish(job.id, job.generation, results):
            started = job.stamps.get("running")
            if started is not None and job.site and job.compute_class:
                seconds = (utcnow() - started).total_seconds()
                await store.runtimes.observe(job.task_id, job.site, job.compute_class, seconds)
            await ctx.bus.publish(
                JobFinished(task_id=job.task_id, job_id=job.id, generation=job.generation)
            )
            return JobEventReply(accepted=True)
        return stale
    if body.kind == "preempted":
        reason = body.reason or "the batch system stopped the job"
        if await store.jobs.preempt(job.id, job.generation, reason):
            await store.tasks.add_jobs(job.task_id, -1)  # continued by the next job
            await ctx.bus.publish(JobPreempted(task_id=job.task_id, job_id=job.id))
            return JobEventReply(accepted=True)
        return stale
    reason = body.reason or "the site reported a failure without a reason"
    if await store.jobs.fail(job.id, job.generation, reason):
        await ctx.bus.publish(JobFailed(task_id=job.task_id, job_id=job.id, reason=reason))
        return JobEventReply(accepted=True)
    return stale


async def _keys(ctx: Ctx, job: Job) -> dict[str, str]:
    point = await ctx.store.points.get(job.point_ids[0])
    index = point.index if point is not None else 0
    task = await ctx.constants.task(job.task_id)
    segmented = task is not None and task.config.segmented
    return {
        kind: artifact_key(
            job.owner,
            job.task_id,
            job.id,
            kind,
            segment=job.segment,
            point_index=index,
            segmented=segmented,
        )
        for kind in ("metrics", "log", "meta")
    }


def _check_lease(job: Job, generation: int) -> None:
    if generation != job.generation or job.status not in (*_LIVE, JobStatus.FINISHED):
        raise HTTPException(status.HTTP_409_CONFLICT, "lease lost or superseded")


@router.post("/jobs/{job_id}/artifacts")
async def artifact_urls(
    job_id: str, body: ArtifactUrlRequest, ctx: Ctx, token: EdgeToken
) -> ArtifactUrlReply:
    return await _artifact_urls(ctx, await job_of(ctx, token, job_id), body)


async def _artifact_urls(ctx: Ctx, job: Job, body: ArtifactUrlRequest) -> ArtifactUrlReply:
    """Presigned PUT URLs of a job's artifacts (HTTPException 409 for a lost lease)."""
    _check_lease(job, body.generation)
    keys = await _keys(ctx, job)
    return ArtifactUrlReply(
        uploads=[
            PresignedUpload(
                kind=kind, key=keys[kind], url=ctx.artifacts.presign_put(keys[kind], UPLOAD_EXPIRY)
            )
            for kind in dict.fromkeys(body.kinds)
        ]
    )


@router.post("/jobs/{job_id}/artifacts/confirm")
async def confirm_artifact(
    job_id: str, body: ArtifactConfirm, ctx: Ctx, token: EdgeToken
) -> ArtifactConfirmReply:
    return await _confirm_artifact(ctx, await job_of(ctx, token, job_id), body)


async def _confirm_artifact(ctx: Ctx, job: Job, body: ArtifactConfirm) -> ArtifactConfirmReply:
    """Record an uploaded artifact (HTTPException 409 for a lost lease, 422 for a key
    that is not the job's)."""
    _check_lease(job, body.generation)
    if (await _keys(ctx, job))[body.kind] != body.key:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "key does not belong to this job"
        )
    artifact = Artifact(
        id=f"{job.id}.{body.kind}",
        owner=job.owner,
        task_id=job.task_id,
        job_id=job.id,
        kind=body.kind,
        key=body.key,
        size=body.size,
        sha256=body.sha256,
    )
    await ctx.store.artifacts.upsert(artifact)
    await ctx.bus.publish(ArtifactUploaded(artifact_id=artifact.id))
    return ArtifactConfirmReply(artifact_id=artifact.id)


@router.post("/sites/{site}/artifacts")
async def artifact_url_batch(
    site: str, body: ArtifactUrlBatch, ctx: Ctx, token: EdgeToken
) -> ArtifactUrlBatchReply:
    """The artifact upload URLs of every job a scan reports, in one request, answered in
    order; a job the single call refuses gets no URL and the reason."""
    _site_of(token, site)
    replies = []
    for item in body.jobs:
        job = await _job_at(ctx, item.job_id, site)
        if job is None:
            replies.append(JobArtifactUploads(detail=f"no job {item.job_id} at this site"))
            continue
        request = ArtifactUrlRequest(generation=item.generation, kinds=item.kinds)
        try:
            reply = await _artifact_urls(ctx, job, request)
        except HTTPException as exc:
            replies.append(JobArtifactUploads(detail=str(exc.detail)))
            continue
        replies.append(JobArtifactUploads(uploads=reply.uploads))
    return ArtifactUrlBatchReply(replies=replies)


@router.post("/sites/{site}/artifacts/confirm")
async def confirm_artifact_batch(
    site: str, body: ArtifactConfirmBatch, ctx: Ctx, token: EdgeToken
) -> ArtifactConfirmBatchReply:
    """Every artifact a scan uploaded, confirmed in one request, answered in order."""
    _site_of(token, site)
    replies = []
    for item in body.confirms:
        job = await _job_at(ctx, item.job_id, site)
        if job is None:
            replies.append(ArtifactConfirmAnswer(detail=f"no job {item.job_id} at this site"))
            continue
        confirm = ArtifactConfirm.model_validate(item.model_dump(exclude={"job_id"}))
        try:
            reply = await _confirm_artifact(ctx, job, confirm)
        except HTTPException as exc:
            replies.append(ArtifactConfirmAnswer(detail=str(exc.detail)))
            continue
        replies.append(ArtifactConfirmAnswer(artifact_id=reply.artifact_id))
    return ArtifactConfirmBatchReply(replies=replies)
