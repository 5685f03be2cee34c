"""The harvester: the login-node daemon between the central api and the site.

Three loops share one event loop: the site heartbeat (free slots), the lease loop
(long-polls for jobs while slots are free, stages and submits them), and the scan
(every ``poll_interval``: notices lost jobs, reports ended ones, and relays the job
heartbeats due, all in one request). Everything it needs to go on after ``kill -9``
is in the job directories, read back at start; two harvesters on one root are
prevented by a lock file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from edge.batch import BatchState, BatchSubmitError, BatchSystem, open_batch
from edge.classes import class_batch_options, declared_classes
from edge.config import SiteConfig, tls_verify
from edge.documents import HarvesterRecord, NodeSettings, NodeStatus
from edge.fsproto import JobPaths, read_text, tail_text, write_text_atomic
from edge.harvester.api import ApiUnavailableError, EdgeApiClient, EdgeApiError
from edge.harvester.checkpoints import upload_new_snapshot
from edge.harvester.curves import CurveRelay
from edge.harvester.datacache import DatasetCache
from edge.harvester.datasets import (
    DatasetStager,
    JobInputs,
    sweep_reported_inputs,
    unlink_inputs,
)
from edge.harvester.images import ImageStager, LeaseLostError, open_cache
from edge.harvester.jobs import TrackedJob, load_active_jobs, load_job
from edge.harvester.liveness import Observation, lost_reason, observe
from edge.harvester.outcome import Outcome, lost
from edge.harvester.payloadfile import PayloadFileError, PayloadReader, PayloadReadTimeoutError
from edge.harvester.pool import WorkerPool, late_binding_pool
from edge.harvester.report import Ended, Reporter, decide_from_disk
from edge.harvester.restore import RestoreError, fetch_checkpoint
from edge.harvester.staging import StagingError, stage_job, sweep_staging_leftovers
from edge.metrics import EdgeMetrics
from edge.version import edge_version
from shared.capabilities import declared
from shared.clock import utcnow
from shared.edge_api import (
    MAX_BATCH,
    HeartbeatBatch,
    JobEvent,
    JobEventReply,
    JobSpec,
    LeaseRequest,
    SiteHeartbeatBody,
    SiteJobBeat,
)

log = logging.getLogger(__name__)

KILL_ON_STATUSES = frozenset({404, 409, 410})
"""Answers to a job event meaning the api no longer wants this job run here."""


class HarvesterLockedError(RuntimeError):
    pass


@contextlib.contextmanager
def root_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the edge root for the harvester's lifetime."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".harvester.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise HarvesterLockedError(f"another harvester is running on {root}") from exc
        yield
    finally:
        os.close(fd)


class Harvester:
    """The daemon for one site. ``Harvester(config)`` builds its api client and batch
    adapter from the config (raising IsolationUnavailableError when network isolation
    is asked for and impossible); tests inject their own."""

    def __init__(
        self,
        config: SiteConfig,
        api: EdgeApiClient | None = None,
        batch: BatchSystem | None = None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or EdgeMetrics(config.site)
        self.metrics.watch(lambda: len(self.jobs), self.free_slots, config.slots)
        self.batch = batch or open_batch(config.batch, isolate_network=config.isolate_network)
        self._owns_api = api is None
        self.api = api or EdgeApiClient(
            config.base_url,
            config.site,
            config.api_token,
            verify=tls_verify(config),
            timeout=config.request_timeout,
        )
        self.jobs: dict[str, TrackedJob] = {}
        self.reader = PayloadReader(config.payload_files)
        """Reads of what payloads wrote, on threads of their own under a time limit."""
        self.curves = CurveRelay(self.api, self.reader)
        self.reporter = Reporter(self.api, self.reader)
        """Reports ended jobs: a scan's terminal events in one request."""
        self.images = ImageStager(
            config.arch,
            open_cache(config.images, config.runtime, config.root),
            in_use=self._images_in_use,
            keepalive_interval=config.heartbeat_interval,
        )
        self.datasets = DatasetStager(
            DatasetCache(
                config.datasets.dir or config.root / "datasets",
                max_size=int(config.datasets.max_size),
                fetch=self.api.download_stream,
                download_timeout=config.datasets.download_timeout,
            ),
            config.datasets.present,
            keepalive_interval=config.heartbeat_interval,
        )
        self.pool = late_binding_pool(config, self.batch) if config.per_gpu else None
        self._loaded = False
        self._slot_freed = asyncio.Event()
        self._pool_lock = asyncio.Lock()  # the scan and the lease loop both dispatch
        self._job_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        """Per job id: a job's terminal report (up to its reported.json) and the staging
        of a new lease of the same id never interleave, so staging never takes an
        attempt whose end is being reported for one still running here."""
        self._recovered_at = float("-inf")
        self._can_recover = True
        """False once the api said it cannot list held leases (an older api)."""
        self._batch_beats = True
        """Relay a scan's heartbeats in one request, until an api says it cannot."""

    # -- state ---------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the view of active jobs from the job directories (once)."""
        if self._loaded:
            return
        sweep_staging_leftovers(self.config.root)
        sweep_reported_inputs(self.config.root)
        self.jobs = load_active_jobs(self.config.root)
        if self.pool is not None:
            self.pool.load()
        self._loaded = True
        log.info(
            "harvester for site %s on %s: %d active job(s)",
            self.config.site,
            self.config.root,
            len(self.jobs),
        )

    def capacity(self) -> int:
        """Jobs held at once: one per slot, plus those queued in late-binding inboxes."""
        if self.pool is None:
            return self.config.slots
        return self.config.slots * (1 + self.config.late_binding.queue_per_slot)

    def free_slots(self) -> int:
        return max(0, self.capacity() - len(self.jobs))

    def node_settings(self, spec: JobSpec, image: str | None) -> NodeSettings:
        """``image`` is what :meth:`ImageStager.reserve` gave for ``spec``."""
        return NodeSettings(
            heartbeat_interval=self.config.heartbeat_interval,
            kill_grace_seconds=self.config.kill_grace_seconds,
            runtime=self.config.runtime,
            image=image,
        )

    def _images_in_use(self) -> set[str]:
        return {j.doc.node.image for j in self.jobs.values() if j.doc.node.image}

    async def aclose(self) -> None:
        """Release the api client if this harvester built it (``run`` does it itself)."""
        self.reader.close()
        if self._owns_api:
            await self.api.aclose()

    # -- site heartbeat and leases ----------------------------------------------------

    async def heartbeat_site(self) -> None:
        await self.api.heartbeat(
            SiteHeartbeatBody(
                arch=self.config.arch,
                free_slots=self.free_slots(),
                total_slots=self.config.slots,
                version=edge_version(),
                capabilities=declared(self.config.runtime),
                compute_classes=declared_classes(self.config),
            )
        )

    async def lease_once(self, wait_seconds: float) -> int:
        """Ask for as many jobs as there are free slots; start them. Returns how many."""
        free = self.free_slots()
        if free == 0:
            return 0
        reply = await self.api.lease(
            LeaseRequest(max_jobs=min(free, 1000), wait_seconds=wait_seconds)
        )
        # Concurrently: one job's image pull must not hold the others' (their leases).
        await asyncio.gather(*(self._start_leased(spec) for spec in reply.jobs))
        return len(reply.jobs)

    async def _start_leased(self, spec: JobSpec) -> None:
        try:
            await self._start_job(spec)
        except ApiUnavailableError as exc:
            # Staged and submitted: the scan sends the missing event later.
            log.warning("job %s: api unavailable after staging: %s", spec.job_id, exc)

    async def _start_job(self, spec: JobSpec) -> None:
        """Pull the job's image and bring its dataset files into the site's cache when
        needed, then stage and submit the job; both stay reserved against eviction
        until the job directory links them (files) or the job is tracked (images)."""
        keep = lambda: self._keep_leased(spec)  # noqa: E731
        try:
            async with (
                self.images.reserve(spec, keep) as image,
                self.datasets.reserve(spec, keep) as inputs,
            ):
                await self._stage_and_submit(spec, image, inputs)
        except LeaseLostError:
            pass
        except StagingError as exc:  # the image or the datasets
            await self._refuse(spec, exc)

    async def _refuse(self, spec: JobSpec, exc: Exception) -> None:
        log.error("job %s cannot be staged: %s", spec.job_id, exc)
        await self._send(
            spec.job_id,
            JobEvent(
                kind="failed",
                generation=spec.generation,
                reason=f"the site could not stage the job: {exc}",
            ),
        )

    async def _stage_and_submit(
        self, spec: JobSpec, image: str | None, inputs: JobInputs | None = None
    ) -> None:
        root = self.config.root
        links = {}
        if inputs is not None:
            spec = spec.model_copy(update={"training_files": inputs.training_files})
            links = inputs.link_sources()
        try:
            checkpoint = await fetch_checkpoint(self.api, root, spec)
            async with self._staging_lock(spec.job_id):
                if self.pool is not None:
                    await self._forget_old_attempt(self.pool, JobPaths.under(root, spec.job_id))
                paths, new = await asyncio.to_thread(
                    stage_job,
                    root,
                    spec,
                    self.node_settings(spec, image),
                    checkpoint=checkpoint,
                    links=links,
                )
        except (StagingError, RestoreError, OSError) as exc:
            await self._refuse(spec, exc)
            return
        job = await asyncio.to_thread(load_job, paths)
        if job is None:  # cannot happen short of someone editing the directory
            log.error("job %s: staged directory %s unreadable", spec.job_id, paths.dir)
            return
        if new and self.pool is not None:  # dispatched to a worker by the next scan
            job.record = HarvesterRecord(batch_kind=self.batch.kind)
            await asyncio.to_thread(job.save_record)
        elif new and not await self._submit(job):
            return
        # Tracked only once ``started`` is answered, so that a concurrent scan never sees
        # it half started, nor reports a fast job's end before its start.
        try:
            await self._send_started(job)
        finally:
            self.jobs[job.job_id] = job

    async def _submit(self, job: TrackedJob) -> bool:
        """Hand a staged job to the batch system; False if it refused (the job is then
        reported lost). The record says a submission began before it does, so that a
        restart knows a job without it was never submitted."""
        job.record = HarvesterRecord(batch_kind=self.batch.kind, submit_started_at=utcnow())
        await asyncio.to_thread(job.save_record)
        try:
            options = class_batch_options(self.config, job.doc.spec.compute_class)
            batch_id = await asyncio.to_thread(self.batch.submit, job.paths.dir, options)
        except BatchSubmitError as exc:
            self.jobs[job.job_id] = job
            await self._report(job, lost(f"the site could not submit the job: {exc}", ""))
            return False
        job.record = job.record.model_copy(update={"batch_id": batch_id, "submitted_at": utcnow()})
        await asyncio.to_thread(job.save_record)
        log.info("job %s (generation %d) submitted as %s", job.job_id, job.generation, batch_id)
        return True

    # -- job events -------------------------------------------------------------------

    async def _send(self, job_id: str, event: JobEvent) -> bool | None:
        """Send ``event``; return the reply's ``kill`` (None if the api refused it)."""
        reply = await self._send_reply(job_id, event)
        return None if reply is None else reply.kill

    async def _send_reply(self, job_id: str, event: JobEvent) -> JobEventReply | None:
        """Send ``event``; the reply (None if the api refused it without a kill)."""
        try:
            reply = await self.api.job_event(job_id, event)
        except EdgeApiError as exc:
            log.warning("job %s: %s event refused: %s", job_id, event.kind, exc)
            if exc.status in KILL_ON_STATUSES:
                return JobEventReply(accepted=False, kill=True, detail=exc.detail)
            return None
        if not reply.accepted:
            log.warning(
                "job %s: %s event not accepted: %s",
                job_id,
                event.kind,
                reply.detail or "stale lease",
            )
        return reply

    async def _keep_leased(self, spec: JobSpec) -> bool:
        """Extend the lease of a job not staged yet; False once it is not wanted."""
        try:
            kill = await self._send(
                spec.job_id, JobEvent(kind="heartbeat", generation=spec.generation)
            )
        except ApiUnavailableError:
            return True  # the lease may yet survive; the pull goes on
        return not kill

    async def _send_started(self, job: TrackedJob) -> None:
        kill = await self._send(job.job_id, JobEvent(kind="started", generation=job.generation))
        job.record.started_reported = True
        await asyncio.to_thread(job.save_record)
        job.last_beat = time.monotonic()
        if kill:
            await self._request_kill(job, "the central service cancelled the job")

    async def _request_kill(self, job: TrackedJob, reason: str) -> None:
        if not job.paths.kill.exists():
            log.info("job %s: kill (%s)", job.job_id, reason)
            await asyncio.to_thread(write_text_atomic, job.paths.kill, reason + "\n")
        if not job.paths.heartbeat.exists() and job.record.batch_id:
            await asyncio.to_thread(self.batch.cancel, job.record.batch_id)

    async def _report(self, job: TrackedJob, outcome: Outcome, host: str = "") -> None:
        await self._report_ended([Ended(job, outcome, host)])

    async def _report_ended(self, ended: list[Ended]) -> None:
        """Report ``ended`` together (their events in one request), each under its job's
        lock up to its ``reported.json``; forget those reported. The locks are taken in
        job id order, so two reports of overlapping jobs cannot wait for each other."""
        unique = list({e.job.job_id: e for e in reversed(ended)}.values())[::-1]
        if not unique:
            return
        async with contextlib.AsyncExitStack() as stack:
            for job_id in sorted(e.job.job_id for e in unique):
                await stack.enter_async_context(self._job_locks[job_id])
            done = await self.reporter.report(unique)
        for item in done:
            job = item.job
            if job.doc.inputs:
                await asyncio.to_thread(unlink_inputs, job.paths.work, job.doc.inputs)
            self.jobs.pop(job.job_id, None)
            self.curves.forget(job.job_id)
            self._slot_freed.set()

    # -- the scan ---------------------------------------------------------------------

    async def scan(self) -> None:
        """One pass over the active jobs: report ended ones, find lost ones, relay
        heartbeats of the others."""
        with self.metrics.scan_seconds.time():
            await self._scan()

    async def _scan(self) -> None:
        if self.pool is not None:
            await self._scan_pool(self.pool)
        jobs = list(self.jobs.values())
        if not jobs:
            return
        batch_ids = [j.record.batch_id for j in jobs if j.record.batch_id]
        states: dict[str, BatchState] = {}
        if batch_ids:
            states = await asyncio.to_thread(self.batch.poll, batch_ids)
        seen = await asyncio.gather(*(self._observe(j) for j in jobs))
        due: list[tuple[TrackedJob, SiteJobBeat]] = []
        ended: list[Ended] = []
        for job, obs in zip(jobs, seen, strict=True):
            state = states.get(job.record.batch_id or "", "unknown")
            if self.pool is not None:
                state = self.pool.job_state(job.job_id)
            try:
                if isinstance(obs, PayloadFileError):
                    await self._fail_payload(job, str(obs), None)
                    continue
                if obs is None:
                    continue
                found = await self._scan_job(job, obs, state)
            except PayloadReadTimeoutError as exc:
                log.warning("job %s: %s; read again next scan", job.job_id, exc)
                continue
            except ApiUnavailableError as exc:
                log.warning("api unavailable, scan cut short: %s", exc)
                return
            except Exception:
                log.exception("job %s: scan failed", job.job_id)
                continue
            if isinstance(found, Ended):
                ended.append(found)
            elif found is not None:
                due.append((job, found))
        try:
            await self._report_ended(ended)
        except ApiUnavailableError as exc:
            log.warning("api unavailable, ended jobs reported later: %s", exc)
            return
        try:
            for start in range(0, len(due), MAX_BATCH):
                await self._send_beats(due[start : start + MAX_BATCH])
        except ApiUnavailableError as exc:
            log.warning("api unavailable, heartbeats not relayed: %s", exc)

    async def _observe(self, job: TrackedJob) -> Observation | PayloadFileError | None:
        """The job's files for this scan, read off the loop and time-limited: None if
        the read took too long (tried again next scan), the error if the payload left
        a status.json that cannot be read safely."""
        try:
            return await self.reader.call(
                f"status.json of job {job.job_id}", observe, job, self.reader.limits
            )
        except PayloadFileError as exc:
            return exc
        except PayloadReadTimeoutError as exc:
            log.warning("job %s: %s; read again next scan", job.job_id, exc)
            return None

    async def _fail_payload(self, job: TrackedJob, reason: str, status: NodeStatus | None) -> None:
        """A file the payload wrote is refused: stop the job and report it failed with
        the reason, which frees its slot for good (a restart reads ``reported.json``)."""
        log.warning("job %s fails: %s", job.job_id, reason)
        await self._request_kill(job, reason)
        if job.record.batch_id and (status is None or not status.terminal):
            await asyncio.to_thread(self.batch.cancel, job.record.batch_id)
        await self._report(job, lost(reason, ""), status.host if status else "")

    async def _send_beats(self, due: list[tuple[TrackedJob, SiteJobBeat]]) -> None:
        """Relay the scan's due heartbeats in one request (one per job to an api
        without the batch call), then act on the replies."""
        if not due:
            return
        replies: list[JobEventReply | None] = []
        if self._batch_beats:
            try:
                answer = await self.api.heartbeats(HeartbeatBatch(beats=[b for _, b in due]))
                replies = list(answer.replies)
            except EdgeApiError as exc:
                if exc.status not in (404, 405):
                    log.warning("heartbeats refused: %s", exc)
                    return
                log.info("the api has no batched heartbeats; sending them one by one")
                self._batch_beats = False
        if not self._batch_beats:
            for job, beat in due:
                event = JobEvent(kind="heartbeat", generation=beat.generation, host=beat.host)
                replies.append(await self._send_reply(job.job_id, event))
        now = time.monotonic()
        for (job, _), reply in zip(due, replies, strict=True):
            job.last_beat = now
            if reply is not None and reply.kill:
                reason = reply.detail or "the central service asked to stop the job"
                await self._request_kill(job, reason)

    async def _scan_job(
        self, job: TrackedJob, obs: Observation, state: BatchState
    ) -> SiteJobBeat | Ended | None:
        """Kill or keep the job: the heartbeat it has due, or its end, to send with the
        others of the scan. A file of the payload refused on the way fails the job."""
        if not job.record.started_reported:
            await self._send_started(job)
        status = obs.status
        try:
            return await self._scan_files(job, obs, state)
        except PayloadFileError as exc:
            await self._fail_payload(job, str(exc), status)
            return None

    async def _scan_files(
        self, job: TrackedJob, obs: Observation, state: BatchState
    ) -> SiteJobBeat | Ended | None:
        stop_reason = await self.curves.relay(job)
        if stop_reason:
            await self._request_kill(job, stop_reason)
        status = obs.status
        if status is not None and status.terminal:
            outcome = await self.reader.call(
                f"the files of job {job.job_id}",
                decide_from_disk,
                job,
                status,
                self.reader.limits,
            )
            return Ended(job, outcome, status.host)
        job.done_polls = job.done_polls + 1 if state == "done" else 0
        reason = lost_reason(
            obs,
            state,
            done_scans=job.done_polls,
            submitted=job.record.batch_id is not None or self.pool is not None,
            limit=self.config.lost_after_seconds,
        )
        if reason is not None:
            await self._request_kill(job, reason)
            if job.record.batch_id:  # also sweeps what a dead agent left running
                await asyncio.to_thread(self.batch.cancel, job.record.batch_id)
            agent_tail = await asyncio.to_thread(tail_text, job.paths.agent_log, 10)
            return Ended(job, lost(reason, agent_tail), status.host if status else "")
        await upload_new_snapshot(self.api, job, self.reader)
        if time.monotonic() - job.last_beat < self.config.heartbeat_interval:
            return None
        return SiteJobBeat(
            job_id=job.job_id, generation=job.generation, host=status.host if status else ""
        )

    @contextlib.asynccontextmanager
    async def _staging_lock(self, job_id: str) -> AsyncIterator[None]:
        """The pool's lock (when there is a pool), then the job's: the order in which a
        report made from the pool's step takes them too."""
        async with contextlib.AsyncExitStack() as stack:
            if self.pool is not None:
                await stack.enter_async_context(self._pool_lock)
            await stack.enter_async_context(self._job_locks[job_id])
            yield

    async def _forget_old_attempt(self, pool: WorkerPool, paths: JobPaths) -> None:
        """A job id staged afresh (never seen, or its last attempt here was reported)
        must not be taken for claimed by the slot that ran that last attempt. Called
        under :meth:`_staging_lock`."""
        if paths.dir.exists() and not paths.reported.exists():
            return  # the same attempt leased again: what the worker did counts
        await asyncio.to_thread(pool.forget, paths.job_id)

    async def _scan_pool(self, pool: WorkerPool) -> None:
        """Late binding: take back the unclaimed jobs the api cancelled (reported lost
        at once, they never started), then let the pool dispatch the others."""
        async with self._pool_lock:
            await self._pool_step(pool)

    async def _pool_step(self, pool: WorkerPool) -> None:
        active = dict(self.jobs)  # one view: a job started meanwhile waits for the next step
        jobs = list(active.values())
        killed = await asyncio.to_thread(
            lambda: frozenset(j.job_id for j in jobs if j.paths.kill.exists())
        )
        expected = {j.job_id: j.doc.spec.expected_seconds for j in jobs}
        classes = {j.job_id: j.doc.spec.compute_class for j in jobs}
        result = await asyncio.to_thread(pool.step, active, killed, expected, classes)
        ended: list[Ended] = []
        for job_id in result.taken_back:
            job = self.jobs.get(job_id)
            if job is None:
                continue
            why = (await asyncio.to_thread(read_text, job.paths.kill) or "").strip()
            ended.append(
                Ended(job, lost(f"{why or 'kill requested'}; the job had not started", ""))
            )
        for job_id, reason in result.failed.items():
            if job_id in self.jobs:
                ended.append(Ended(self.jobs[job_id], lost(reason, "")))
        await self._report_ended(ended)

    # -- running ----------------------------------------------------------------------

    async def run_once(self, lease_wait: float = 0.0) -> None:
        """One step of everything (for tests and tools): scan, heartbeat, lease."""
        if not self._loaded:
            self.load()
            await self.submit_unsubmitted()
        await self.scan()
        await self.heartbeat_site()
        await self.lease_once(lease_wait)

    async def _every(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        interval: float,
        stop: asyncio.Event,
    ) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await step()
            except ApiUnavailableError as exc:
                self.metrics.loop_error(name)
                log.warning("%s: api unavailable: %s", name, exc)
            except EdgeApiError as exc:
                self.metrics.loop_error(name)
                log.error("%s: %s", name, exc)
            except Exception:
                self.metrics.loop_error(name)
                log.exception("%s failed", name)
            pause = max(0.0, interval - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    async def submit_unsubmitted(self) -> int:
        """Submit the jobs an earlier process staged but died before submitting (read
        back by :meth:`load` with no record of a submission). Returns how many."""
        if self.pool is not None:  # late-bound jobs are dispatched by the pool instead
            return 0
        submitted = 0
        for job in list(self.jobs.values()):
            if job.record.batch_id or job.record.submit_started_at or job.paths.heartbeat.exists():
                continue
            log.info("job %s: staged but never submitted; submitting it now", job.job_id)
            self.jobs.pop(job.job_id)  # tracked again once started is answered
            if not await self._submit(job):
                continue
            submitted += 1
            try:
                await self._send_started(job)
            except ApiUnavailableError as exc:  # the scan sends it later
                log.warning("job %s: api unavailable after submitting: %s", job.job_id, exc)
            finally:
                self.jobs[job.job_id] = job
        return submitted

    async def recover_leases(self) -> int:
        """Stage the jobs the api says this site holds but that have no job directory:
        leases granted just before a crash, before the job reached the filesystem, or
        answered to a request of a process that died. Returns how many were recovered.

        Called only between lease requests of this process, never beside one, so that a
        lease of its own being staged is never taken for a lost one."""
        reply = await self.api.held_leases()
        recovered = 0
        for spec in reply.jobs:
            if (
                spec.job_id in self.jobs
                or JobPaths.under(self.config.root, spec.job_id).dir.exists()
            ):
                continue
            log.info("job %s: lease held but never staged; staging it now", spec.job_id)
            await self._start_job(spec)
            recovered += 1
        return recovered

    async def _recover(self) -> None:
        """At the first lease step and every ``lease_recover_interval`` after, stage the
        leases held with no job directory."""
        if time.monotonic() - self._recovered_at < self.config.lease_recover_interval:
            return
        self._recovered_at = time.monotonic()
        try:
            if self._can_recover:
                await self.recover_leases()
        except EdgeApiError as exc:
            if exc.status not in (404, 405):
                raise
            log.warning("held leases cannot be recovered (an older api): %s", exc)
            self._can_recover = False

    async def _lease_step(self) -> None:
        await self._recover()
        if self.free_slots() == 0:
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), self.config.poll_interval)
            return
        if await self.lease_once(self.config.lease_wait_seconds) and self.pool is not None:
            await self._scan_pool(self.pool)  # dispatch now rather than at the next scan

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then finish the steps in flight; holds the root
        lock. Cancelling the task instead stops at once, as ``kill -9`` would."""
        try:
            with root_lock(self.config.root):
                await asyncio.to_thread(self.load)
                await self._run_loops(stop)
        finally:
            await self.aclose()
        log.info("harvester stopped")

    async def _run_loops(self, stop: asyncio.Event) -> None:
        cfg = self.config
        await self.submit_unsubmitted()  # before a scan could take them for lost
        loops = [
            asyncio.create_task(self._every("scan", self.scan, cfg.poll_interval, stop)),
            asyncio.create_task(
                self._every("site heartbeat", self.heartbeat_site, cfg.poll_interval, stop)
            ),
            asyncio.create_task(self._every("lease", self._lease_step, cfg.poll_interval, stop)),
        ]
        try:
            await stop.wait()
            # Let each loop finish its step (a report half-sent, a lease just granted)
            # rather than drop it; cancel what outlives the grace period.
            await asyncio.wait(loops, timeout=cfg.lease_wait_seconds + cfg.request_timeout)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
