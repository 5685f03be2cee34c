"""Pure decisions of the job builder: how many jobs to build, what an outcome means,
and how a task ends."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.domain.models import Job, JobStatus, Point, PointOutcome, TaskStatus
from shared.domain.taskconfig import TaskConfig


def job_slots(config: TaskConfig, active_jobs: int, total_jobs: int, *, segments: int = 1) -> int:
    """Jobs that may be defined now: nParallelEvaluation active, maxEvaluationJobs in all
    (by default twice ``maxPoints`` per segment)."""
    budget = config.job_budget(segments)
    return max(0, min(config.nParallelEvaluation - active_jobs, budget - total_jobs))


class Verdict(StrEnum):
    EVALUATED = "evaluated"
    RETRY = "retry"
    RESUME = "resume"
    """Preempted with a checkpoint: the next job continues the same attempt."""
    GIVE_UP = "give_up"
    IGNORE = "ignore"


@dataclass(frozen=True)
class PointVerdict:
    point_id: str
    verdict: Verdict
    loss: float | list[float] | None = None
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def _failure(point_id: str, attempts: int, max_attempts: int, reason: str) -> PointVerdict:
    verdict = Verdict.RETRY if attempts < max_attempts else Verdict.GIVE_UP
    return PointVerdict(point_id, verdict, reason=reason)


def may_resume(point: Point, max_preemptions: int) -> bool:
    """Whether a preemption of ``point``'s job can be resumed for free: there is a
    checkpoint to resume from and the point's preemption budget is not spent."""
    return point.checkpoint is not None and point.preemptions < max_preemptions


def judge(
    job: Job,
    attempts: dict[str, int],
    max_attempts: int,
    *,
    resumable: Collection[str] = (),
) -> list[PointVerdict]:
    """What a terminal job means for each of its points.

    ``attempts`` is each point's attempt count as stored; ``resumable`` the points for
    which :func:`may_resume` holds. A cancelled job changes nothing: its task is over.
    A preempted job is resumed for those points and is a failed attempt for the others.
    """
    if job.status is JobStatus.CANCELLED:
        return [PointVerdict(pid, Verdict.IGNORE) for pid in job.point_ids]
    if job.status is JobStatus.PREEMPTED:
        reason = job.reason or "job preempted"
        return [
            PointVerdict(pid, Verdict.RESUME, reason=reason)
            if pid in resumable
            else _failure(
                pid,
                attempts.get(pid, 0),
                max_attempts,
                f"{reason} (no checkpoint to resume from, or the task's maxPreemptions "
                "was reached)",
            )
            for pid in job.point_ids
        ]
    if job.status in (JobStatus.FAILED, JobStatus.LOST):
        reason = job.reason or f"job {job.status.value}"
        return [_failure(pid, attempts.get(pid, 0), max_attempts, reason) for pid in job.point_ids]
    by_point: dict[str, PointOutcome] = {r.point_id: r for r in job.results}
    verdicts = []
    for pid in job.point_ids:
        outcome = by_point.get(pid)
        if outcome is None:
            reason = "the job finished without a result for this point"
        elif outcome.status != 0 or outcome.loss is None:
            reason = outcome.message or f"evaluation reported status {outcome.status}"
        else:
            verdicts.append(
                PointVerdict(pid, Verdict.EVALUATED, loss=outcome.loss, metrics=outcome.metrics)
            )
            continue
        verdicts.append(_failure(pid, attempts.get(pid, 0), max_attempts, reason))
    return verdicts


def scalar_loss(loss: float | list[float]) -> float:
    return loss[0] if isinstance(loss, list) else loss


def idle_over(last_activity: datetime, now: datetime, idle_timeout: float) -> bool:
    """Whether an online study has gone ``idle_timeout`` seconds without an ask or tell."""
    return (now - last_activity).total_seconds() >= idle_timeout


@dataclass(frozen=True)
class TaskTally:
    """What the job builder knows of a task when it asks whether the task is over."""

    segments: int
    max_points: int
    """``maxPoints`` (per segment)."""
    budget: int
    """``maxEvaluationJobs`` (see :meth:`TaskConfig.job_budget`)."""
    jobs: int
    """Jobs that count against the budget."""
    evaluated: int
    failed: int
    open: int
    """Points unevaluated or pending."""
    exhausted: bool
    """Every segment's search is over (its steering has nothing more to give)."""

    @property
    def planned(self) -> int:
        return self.max_points * max(self.segments, 1)

    @property
    def generation_over(self) -> bool:
        return self.exhausted and self.open == 0

    @property
    def budget_over(self) -> bool:
        return self.jobs >= self.budget

    @property
    def over(self) -> bool:
        """No more job will be built: once the active ones end, the task ends."""
        return self.generation_over or self.budget_over


@dataclass(frozen=True)
class TaskEnd:
    status: TaskStatus
    reason: str


MAX_ERROR_CHARS = 300


def _of_points(t: TaskTally) -> str:
    where = f" of {t.segments} segments" if t.segments > 1 else ""
    return f"{t.planned} points{where}"


def _error_tail(last_error: str) -> str:
    text = " ".join(last_error.split())
    if not text:
        return ""
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return f"; last error: {text}"


def task_end(t: TaskTally, *, max_attempts: int, last_error: str = "") -> TaskEnd:
    """How a task that is :attr:`~TaskTally.over` ends, and why, in the user's words.

    ``done`` only when the search itself ended (every segment exhausted, no point
    open) and at least one point got a loss. It is ``failed`` when no evaluation gave a
    loss at all (every job failed), and when the job budget ran out before the points
    were evaluated: retries of failed attempts use jobs, so a budget below what the
    retries need would otherwise leave points never evaluated behind a green ``done``.
    ``last_error`` is the reason of the last failed job or point, quoted in a failure.
    """
    tried = f"after {max_attempts} attempt{'s' if max_attempts != 1 else ''}"
    if t.evaluated == 0:
        if t.jobs == 0:
            reason = "the search ended before any point was evaluated (no point was generated)"
        else:
            reason = f"every evaluation failed: none of {t.jobs} jobs gave a loss"
            if t.failed:
                reason += f" ({t.failed} of {t.planned} points failed {tried})"
            if t.budget_over and not t.generation_over:
                reason += f"; maxEvaluationJobs ({t.budget}) reached"
        return TaskEnd(TaskStatus.FAILED, reason + _error_tail(last_error))
    if not t.generation_over:
        never = t.planned - t.evaluated - t.failed
        return TaskEnd(
            TaskStatus.FAILED,
            f"maxEvaluationJobs ({t.budget}) reached with {never} of {_of_points(t)} never "
            f"evaluated ({t.evaluated} evaluated, {t.failed} failed {tried}): retries of failed "
            "attempts used up the jobs; raise maxEvaluationJobs or fix the failures"
            + _error_tail(last_error),
        )
    settled = t.evaluated + t.failed
    counts = f"{t.evaluated} evaluated" + (f", {t.failed} failed {tried}" if t.failed else "")
    if settled < t.planned:
        reason = (
            f"the search ended after {settled} of {_of_points(t)}: the optimiser had no "
            f"more points to propose; {counts}"
        )
    elif t.failed:
        reason = f"{_of_points(t)}: {counts}"
    else:
        reason = f"all {_of_points(t)} evaluated"
    return TaskEnd(TaskStatus.DONE, reason)
