"""The point transitions, derived from :data:`~shared.domain.models.POINT_STATES`.

Each transition a repository makes is named here with the status it moves to and,
where the write belongs to whoever holds the point (the attempt whose job owns it, or
the ask of an online trial), the hold. The status filter is the state machine's
sources of the target, narrowed to ``pending`` for a held write: only a pending point
has an owner. Both adapters read their filters from here, so a transition the state
machine forbids cannot be written by either, and a change to the machine changes both.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.models import POINT_STATES, Point, PointStatus

HELD = PointStatus.PENDING
"""The status in which a point is owned by an attempt (or an online ask)."""
OPEN_STATUSES = (PointStatus.UNEVALUATED, PointStatus.PENDING)
"""A point in these may still change; the others are final."""


@dataclass(frozen=True)
class PointMove:
    name: str
    target: PointStatus
    held: bool
    """Only the holder may make it: the status must be ``pending`` (and, for a batch
    point, the job id the holder's)."""

    @property
    def sources(self) -> tuple[PointStatus, ...]:
        found = tuple(POINT_STATES.sources(self.target))
        if self.held:
            found = tuple(s for s in found if s is HELD)
        if not found:
            raise ValueError(f"point: nothing may move to {self.target.value} ({self.name})")
        return found

    @property
    def values(self) -> list[str]:
        return [s.value for s in self.sources]


START = PointMove("start an attempt", PointStatus.PENDING, held=False)
RESULT = PointMove("record a result", PointStatus.EVALUATED, held=True)
RETRY = PointMove("retry", PointStatus.UNEVALUATED, held=True)
RESUME = PointMove("resume after a preemption", PointStatus.UNEVALUATED, held=True)
GIVE_UP = PointMove("give up", PointStatus.FAILED, held=True)
PRUNE = PointMove("prune", PointStatus.EVALUATED, held=True)
TELL = PointMove("tell a trial", PointStatus.EVALUATED, held=True)
FAIL_TRIAL = PointMove("fail a trial", PointStatus.FAILED, held=True)
MOVES = (START, RESULT, RETRY, RESUME, GIVE_UP, PRUNE, TELL, FAIL_TRIAL)


def status_filter(move: PointMove) -> str | dict[str, list[str]]:
    """The MongoDB filter on ``status`` for ``move`` (an equality for one source)."""
    values = move.values
    return values[0] if len(values) == 1 else {"$in": values}


def attempt_job_id(point_id: str, attempt: int, preemptions: int = 0) -> str:
    """Job ids are derived from the point, attempt and (for a job resuming a preempted
    one) the preemption count, so re-creating one is idempotent."""
    base = f"{point_id}.a{attempt}"
    return f"{base}.r{preemptions}" if preemptions else base


def next_attempt(point: Point) -> tuple[int, str]:
    """The attempt number and job id of the point's next job: a resumed preemption
    continues the current attempt, anything else starts a new one."""
    if point.resume:
        return point.attempts, attempt_job_id(point.id, point.attempts, point.preemptions)
    return point.attempts + 1, attempt_job_id(point.id, point.attempts + 1)
