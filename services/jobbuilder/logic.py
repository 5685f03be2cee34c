"""Pure decisions of the job builder: how many jobs to build, what an outcome means."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from shared.domain.models import Job, JobStatus, Point, PointOutcome
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
            verdicts.append(PointVerdict(pid, Verdict.EVALUATED, loss=outcome.loss))
            continue
        verdicts.append(_failure(pid, attempts.get(pid, 0), max_attempts, reason))
    return verdicts


def scalar_loss(loss: float | list[float]) -> float:
    return loss[0] if isinstance(loss, list) else loss
