"""phpo's generation semantics, as pure functions.

A segment gets new points when the number of not-yet-evaluated points (unevaluated
or pending) drops below ``minUnevaluatedPoints`` (when that is 0: when none is left),
``nPointsPerIteration - minUnevaluatedPoints`` of them (all ``nPointsPerIteration``
when it is 0), never more than ``maxPoints`` in the segment's lifetime.
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
