"""phpo's generation semantics, as pure functions.

A segment gets new points when the number of not-yet-evaluated points (unevaluated
or pending) drops below ``minUnevaluatedPoints`` (when that is 0: when none is left),
``nPointsPerIteration - minUnevaluatedPoints`` of them (all ``nPointsPerIteration``
when it is 0), never more than ``maxPoints`` in the segment's lifetime.

A user's steering program (``steeringExec``) is started on the same trigger but is
asked as iDDS asks it (:func:`container_round`): ``%NUM_POINTS`` is
``nPointsPerIteration`` whatever is open, and the program decides how many of them
are new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import TaskConfig

OPEN = (PointStatus.UNEVALUATED, PointStatus.PENDING)


@dataclass(frozen=True)
class SegmentCounts:
    total: int
    open: int

    @classmethod
    def of(cls, history: Sequence[Point]) -> SegmentCounts:
        """The counts of a segment's stored points."""
        return cls(total=len(history), open=sum(p.status in OPEN for p in history))


def points_to_generate(config: TaskConfig, counts: SegmentCounts) -> int:
    remaining = config.maxPoints - counts.total
    if remaining <= 0:
        return 0
    threshold = config.minUnevaluatedPoints
    if threshold == 0:
        if counts.open > 0:
            return 0
        wanted = config.nPointsPerIteration
    else:
        if counts.open >= threshold:
            return 0
        wanted = config.nPointsPerIteration - threshold
    return min(wanted, remaining)


def container_round(config: TaskConfig, counts: SegmentCounts) -> int:
    """The ``%NUM_POINTS`` of a steering program's round for a segment; 0 when no round
    is due.

    iDDS starts a round when no point is open or, with ``minUnevaluatedPoints``, when
    fewer than that are open, and substitutes the task's ``nPointsPerIteration`` (phpo
    sends it as ``num_points_per_generation``) for ``%NUM_POINTS`` every time, however
    many points are open. Programs read it in two ways, and both work: as the number
    of new points to write (iDDS's documented contract), or, as hpogrid does, as the
    number of open points to leave behind, writing ``%NUM_POINTS`` minus the open
    points it finds in ``%IN``. Either way at most ``min(%NUM_POINTS, %MAX_POINTS -
    points so far)`` new points are taken.
    """
    if counts.total >= config.maxPoints:
        return 0
    threshold = config.minUnevaluatedPoints
    due = counts.open == 0 if threshold == 0 else counts.open < threshold
    return config.nPointsPerIteration if due else 0


def settled(history: Sequence[Point]) -> int:
    """Points of a segment that have their result (evaluated or failed)."""
    return sum(p.status not in OPEN for p in history)


def segment_seed(base_seed: int, history_length: int) -> int:
    """The sampler's seed for a draw: same seed and same history give the same points."""
    return (base_seed * 1_000_003 + history_length) % (2**32)


def segment_base_seed(task_seed: int, segment_index: int) -> int:
    """Each segment's own constant seed, so that segments with the same space do not
    start from the same points; the first segment keeps the task's seed."""
    return (task_seed + 7919 * segment_index) % (2**31)


def task_seed(task_id: str, configured: int | None) -> int:
    if configured is not None:
        return configured
    return int.from_bytes(task_id.encode()[-8:].rjust(8, b"\0"), "big") % (2**31)
