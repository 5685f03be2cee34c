"""The job builder: turns points into evaluation jobs and results back into points.

It owns a point's attempts: it defines one job per attempt (never more than
nParallelEvaluation active, maxEvaluationJobs in all), applies each terminal job's
outcome to its points exactly once (the point update is conditional on the attempt's
job id; the job is then marked applied), retries failed or lost attempts, and gives a
point the large loss after maxAttempts. It also decides when a task is finished and
how (:func:`.logic.task_end`: done, or failed when no evaluation gave a loss or the job
budget ran out first), and closes online studies whose owner's idle timeout ran out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict
from datetime import timedelta

from services.consumer import BusConsumer
from services.context import Context
from services.instance import instance_name
from services.jobbuilder.logic import (
    TaskTally,
    Verdict,
    idle_over,
    job_slots,
    judge,
    may_resume,
    scalar_loss,
    task_end,
)
from services.jobbuilder.stopping import Evaluated, has_rules, stop_reason
from services.repair import RepairClock
from shared.clock import utcnow
from shared.domain.models import (
    ACTIVE_TASK_STATES,
    TERMINAL_JOB_STATES,
    Job,
    JobStatus,
    Point,
    PointStatus,
    Task,
    TaskStatus,
)
from shared.messages import (
    JobDefined,
    Message,
    PointEvaluated,
    PointFailed,
    TaskFinished,
)
from shared.store.points import next_attempt

log = logging.getLogger(__name__)

BUILD_LOCK_SECONDS = 10.0
"""How long a task's build lock lasts: a job builder killed while building holds up the
task's next build (by another process) this long at most."""
BUILD_LOCK_RETRY_SECONDS = 0.02
CHECKED_TASKS = 4096

ROUTING_KEYS = (
    "task.submitted",
    "points.generated",
    "job.finished",
    "job.failed",
    "job.lost",
    "job.preempted",
)
BUILDING = (TaskStatus.RUNNING, TaskStatus.FINISHING)


class JobBuilderService(BusConsumer):
    name = "jobbuilder"
    routing_keys = ROUTING_KEYS

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.holder = instance_name()
        """This process as a holder of tasks' build locks."""
        self._repair = RepairClock(ctx.settings.repair_interval)
        self._checked: OrderedDict[str, None] = OrderedDict()
        """Tasks whose open jobs this process has put right once (bounded, oldest out):
        the first build of a task in a process does, so a restart (or an upgrade from
        records without the field) does not wait for the periodic pass."""

    async def on_message(self, message: Message) -> None:
        job_id = getattr(message, "job_id", None)
        task_id = getattr(message, "task_id", None)
        closing: list[str] = []
        if isinstance(job_id, str):
            job = await self.ctx.store.jobs.get(job_id)
            # the build that follows drops the job from the task's open jobs as it
            # takes the build lock: one write to the task instead of two
            if job is not None and await self.apply(job, close=not isinstance(task_id, str)):
                closing.append(job.id)
        if isinstance(task_id, str):
            await self.build(task_id, closing=closing)

    async def reconcile(self) -> None:
        repair = self._repair.due()
        if repair:  # outcomes whose message was lost
            for job in await self.ctx.store.jobs.unapplied():
                await self.apply(job)
        for task in await self.ctx.store.tasks.list_active():
            if not task.config.online:
                await self.build(task.id, repair=repair)
        await self.close_idle_studies()

    async def apply(self, job: Job, *, close: bool = True) -> bool:
        """Apply a terminal job's outcome to its points, once; True if this call did.
        ``close`` False: the caller drops the job from the task's open jobs."""
        if job.applied or job.status not in TERMINAL_JOB_STATES:
            return False
        store = self.ctx.store
        task = await self.ctx.constants.task(job.task_id)
        if task is None:
            return False
        points = {p.id: p for p in [await store.points.get(pid) for pid in job.point_ids] if p}
        attempts = {pid: p.attempts for pid, p in points.items()}
        cap = task.config.maxPreemptions
        resumable = {pid for pid, p in points.items() if may_resume(p, cap)}
        for verdict in judge(job, attempts, task.config.maxAttempts, resumable=resumable):
            point = points.get(verdict.point_id)
            if point is None:
                continue
            if verdict.verdict is Verdict.EVALUATED and verdict.loss is not None:
                # A crash after record_result left its follow-ups undone: redo them.
                recorded_before = (
                    point.status is PointStatus.EVALUATED
                    and point.counted_job_id == job.id
                    and point.pruned_step is None
                )
                recorded_now = await store.points.record_result(
                    point.id, job.id, verdict.loss, verdict.metrics
                )
                if recorded_now:
                    self.ctx.metrics.points_evaluated.inc()
                if recorded_now or recorded_before:
                    await store.tasks.offer_best(task.id, scalar_loss(verdict.loss), point.id)
                    await self.ctx.bus.publish(
                        PointEvaluated(
                            task_id=task.id,
                            segment=point.segment,
                            point_id=point.id,
                            loss=verdict.loss,
                        )
                    )
            elif verdict.verdict is Verdict.RETRY:
                if await store.points.retry(point.id, job.id, verdict.reason):
                    self.ctx.metrics.point_retries.inc()
                    log.info(
                        "point %s: attempt %d failed (%s)", point.id, point.attempts, verdict.reason
                    )
            elif verdict.verdict is Verdict.RESUME:
                if await store.points.resume(point.id, job.id, verdict.reason):
                    log.info(
                        "point %s: job %s preempted, resumed from its checkpoint", point.id, job.id
                    )
            elif verdict.verdict is Verdict.GIVE_UP and await store.points.give_up(
                point.id, job.id, verdict.reason, task.config.failedPointLoss
            ):
                log.info("point %s failed after %d attempts", point.id, point.attempts)
                self.ctx.metrics.points_failed.inc()
                await self.ctx.bus.publish(
                    PointFailed(
                        task_id=task.id,
                        segment=point.segment,
                        point_id=point.id,
                        reason=verdict.reason,
                    )
                )
        if await store.jobs.mark_applied(job.id, close=close):
            self.ctx.metrics.observe_job_end(job)
            return True
        return False

    async def build(
        self, task_id: str, *, repair: bool = False, closing: list[str] | None = None
    ) -> None:
        """Define the jobs the task may have now; ``repair`` also re-creates jobs lost
        to a crash (only the periodic pass needs that). ``closing``: jobs just applied,
        to drop from the task's open jobs (with the lock's write when it is free)."""
        constants = await self.ctx.constants.task(task_id)
        if constants is None or constants.config.online:
            if closing:  # an online study's points come from asks, not from jobs
                await self.ctx.store.tasks.repair_open_jobs(task_id, [], closing)
            return
        async with self._locks[task_id]:
            task = await self._claim(task_id, closing or None)
            if task is None:
                return
            try:
                await self._build(task, repair=repair)
            finally:
                await self.ctx.store.tasks.release_build(task_id, self.holder)

    async def _claim(self, task_id: str, closing: list[str] | None = None) -> Task | None:
        """The task with its build lock held by this process, waiting while another
        job builder holds it (its build may predate what triggered this one); None if
        the task is gone. ``closing`` are dropped from its open jobs meanwhile."""
        tasks = self.ctx.store.tasks
        while True:
            now = utcnow()
            until = now + timedelta(seconds=BUILD_LOCK_SECONDS)
            task = await tasks.claim_build(task_id, self.holder, now, until, closing=closing)
            if task is not None:
                return task
            if closing:  # not taken: drop them now, not after the other's build
                await tasks.repair_open_jobs(task_id, [], closing)
                closing = None
            if await tasks.get(task_id) is None:
                return None
            await asyncio.sleep(BUILD_LOCK_RETRY_SECONDS)

    async def _build(self, task: Task, *, repair: bool) -> None:
        if task.status not in ACTIVE_TASK_STATES:
            return
        if await self._stop_early(task) or task.status not in BUILDING:
            return
        counted = task.jobs_counted
        if repair or counted is None:
            await self._recover_pending(task)
            counted = await self.ctx.store.jobs.count(task.id, active_only=False)
            await self.ctx.store.tasks.set_jobs(task.id, counted)
        if repair or task.id not in self._checked:
            task = await self._repair_open_jobs(task)
            self._checked[task.id] = None
            while len(self._checked) > CHECKED_TASKS:
                self._checked.popitem(last=False)
        total_jobs, open_jobs = await self._define_jobs(task, counted)
        await self._maybe_finish(task, total_jobs, open_jobs)
        if repair:
            await self._summarise(task)

    async def _repair_open_jobs(self, task: Task) -> Task:
        """Put the task's open jobs right from its jobs (the periodic pass only): a
        process killed between a job's write and its count's left an id too many, or
        (a record written before the field) too few. The task as it is after."""
        store = self.ctx.store
        actual = await store.jobs.open_ids(task.id)
        kept = set(task.open_jobs)
        add = sorted(set(actual) - kept)
        drop = sorted(kept - set(actual))
        if add or drop:
            await store.tasks.repair_open_jobs(task.id, add, drop)
            log.info("task %s: open jobs put right (+%s, -%s)", task.id, add, drop)
        return task.model_copy(update={"open_jobs": sorted(actual)})

    async def _summarise(self, task: Task) -> None:
        """Bring the task's point summaries (and a multi-objective task's fronts) up to
        date from the new and open points only, so a task view, even the first, never
        reads the whole task."""
        names = [s.name for s in await self.ctx.constants.segments(task.id)]
        await self.ctx.store.summaries.by_segment(task.id, names, task.config.multi_objective)

    async def _stop_early(self, task: Task) -> bool:
        """End the task if one of its stopping rules (:mod:`.stopping`) is met, from
        the stored state: done with the rule as the reason (failed when no point was
        evaluated), its open jobs cancelled as for a user's cancel. True if it ended."""
        if not has_rules(task.config):
            return False
        store = self.ctx.store
        evaluated = [
            Evaluated(pid, loss) for pid, loss in await store.points.evaluated_losses(task.id)
        ]
        stop = stop_reason(task.config, started=task.created, now=utcnow(), evaluated=evaluated)
        if stop is None:
            return False
        end = TaskStatus.DONE if stop.evaluated else TaskStatus.FAILED
        if task.status is TaskStatus.SUBMITTED and end is TaskStatus.DONE:
            await store.tasks.transition(task.id, TaskStatus.RUNNING)
        if end is TaskStatus.DONE:
            await store.tasks.transition(task.id, TaskStatus.FINISHING)
        if not await store.tasks.transition(task.id, end, reason=stop.reason):
            return True  # ended meanwhile (cancelled, or another pass)
        cancelled = await store.jobs.cancel_task_jobs(task.id, f"task ended: {stop.reason}")
        log.info("task %s %s: %s (%d jobs cancelled)", task.id, end.value, stop.reason, cancelled)
        await self.ctx.bus.publish(TaskFinished(task_id=task.id, status=end.value))
        return True

    async def close_idle_studies(self) -> None:
        """Close the online studies whose owner set an idle timeout that has run out.
        One query finds them, so studies without a timeout cost the pass nothing."""
        store = self.ctx.store
        for study in await store.studies.with_idle_timeout():
            last = await store.studies.last_activity(study.id) or study.created
            assert study.idle_timeout is not None
            if not idle_over(last, utcnow(), study.idle_timeout):
                continue
            reason = f"closed after {study.idle_timeout:g} s without an ask or a tell"
            if await store.tasks.close(study.id, reason):
                log.info("study %s %s", study.id, reason)
                await self.ctx.bus.publish(TaskFinished(task_id=study.id, status="done"))
            await store.studies.mark_closed(study.id)  # closed now, or by its owner before

    async def _recover_pending(self, task: Task) -> None:
        """A crash between a point's new attempt and its job's insert leaves a pending
        point without a job; the job id is derived from the attempt, so re-create it."""
        store = self.ctx.store
        for point in await store.points.list_for_task(task.id, status=PointStatus.PENDING):
            if point.job_id and await store.jobs.get(point.job_id) is None:
                await self._insert_job(task, point, point.job_id, point.attempts)

    async def _define_jobs(self, task: Task, total: int) -> tuple[int, int]:
        """Define what the budget and parallelism allow, given the ``total`` jobs the
        task counts; the count after, and the task's open jobs after.

        Both counts are the task's fields, not counts of its jobs (which grow with the
        task), written in one update just before the job's insert: a crash between the
        two leaves each one too many (never a job more than the task allows) until the
        periodic pass puts them right, which a restarted job builder runs first.
        """
        store = self.ctx.store
        active = len(task.open_jobs)
        segments = len(await self.ctx.constants.segments(task.id))
        slots = job_slots(task.config, active, total, segments=segments)
        if slots == 0:
            return total, active
        waiting = await store.points.list_for_task(
            task.id, status=PointStatus.UNEVALUATED, limit=slots
        )
        for point in waiting:
            job_id = await store.points.start_attempt(point)
            if job_id is not None and await self._insert_job(
                task, point, job_id, next_attempt(point)[0], counted=True
            ):
                total += 1
                active += 1
        return total, active

    async def _insert_job(
        self, task: Task, point: Point, job_id: str, attempt: int, *, counted: bool = False
    ) -> bool:
        """Insert the point's job (``counted``: against the budget, in the same write as
        its open id); False if it was there already."""
        job = Job(
            id=job_id,
            task_id=task.id,
            owner=task.owner,
            segment=point.segment,
            point_ids=[point.id],
            attempt=attempt,
        )
        if not await self.ctx.store.jobs.insert(job, counted=counted):
            return False
        await self.ctx.bus.publish(JobDefined(task_id=task.id, job_id=job.id))
        return True

    async def _maybe_finish(self, task: Task, total_jobs: int, open_jobs: int) -> None:
        """``open_jobs``: the task's jobs not yet applied, as the build left them."""
        store = self.ctx.store
        budget = task.config.job_budget(len(await self.ctx.constants.segments(task.id)))
        if total_jobs < budget and open_jobs > 0:
            return  # an open job's point is open: generation is not over either
        segments = await store.segments.list_for_task(task.id)  # their exhausted flags
        exhausted = all(s.exhausted for s in segments)
        if total_jobs < budget and not exhausted:
            return
        if not (await self._tally(task, len(segments), budget, total_jobs, exhausted)).over:
            return
        if task.status is TaskStatus.RUNNING:
            await store.tasks.transition(task.id, TaskStatus.FINISHING)
        if open_jobs > 0:
            return  # a job runs, or its outcome is not on its point yet
        # counted again now that every outcome is applied: the first count may predate one
        tally = await self._tally(task, len(segments), budget, total_jobs, exhausted)
        if not tally.over:
            return
        end = task_end(
            tally, max_attempts=task.config.maxAttempts, last_error=await self._last_error(task)
        )
        if await store.tasks.transition(task.id, end.status, reason=end.reason):
            log.info("task %s %s: %s", task.id, end.status.value, end.reason)
            await self.ctx.bus.publish(TaskFinished(task_id=task.id, status=end.status.value))
            await self._summarise(task)  # final: every point is closed or cancelled

    async def _tally(
        self, task: Task, segments: int, budget: int, jobs: int, exhausted: bool
    ) -> TaskTally:
        counts = await self.ctx.store.points.count_by_status(task.id)
        return TaskTally(
            segments=segments,
            max_points=task.config.maxPoints,
            budget=budget,
            jobs=jobs,
            evaluated=counts[PointStatus.EVALUATED.value],
            failed=counts[PointStatus.FAILED.value],
            open=counts[PointStatus.UNEVALUATED.value] + counts[PointStatus.PENDING.value],
            exhausted=exhausted,
        )

    async def _last_error(self, task: Task) -> str:
        """The reason of the task's last failed or lost job, for its end's reason."""
        jobs = await self.ctx.store.jobs.list_for_task(task.id)
        failed = [j for j in jobs if j.status in (JobStatus.FAILED, JobStatus.LOST) and j.reason]
        return failed[-1].reason if failed else ""
