"""Segment ownership: which steering process generates a segment's points.

Several steering processes may run; each segment has at most one owner at a time, by a
lease in MongoDB (:meth:`SegmentRepo.claim`) that the owner renews when half of
it has run out. A process that dies stops renewing, and after ``lease_seconds`` any
other one may take the segment over. Point ids are unique per (task, segment, index),
so even two processes that both believe they own a segment (a paused process whose
lease ran out, clocks that disagree) cannot store two points at one index; the loser
throws its optimiser away and rebuilds from the database.

The local deadline of a lease is measured on the monotonic clock from *before* the
claim was sent, so it always ends before the one stored in MongoDB.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from shared.clock import utcnow
from shared.store.port import SegmentRepo

IDLE_LEASES = 4
"""A segment not drawn for during this many lease periods is given up."""


@dataclass(frozen=True)
class Holding:
    """The answer to "may this process draw for the segment?"."""

    held: bool
    continuous: bool
    """Held without a gap since the last time it was asked: whatever this process kept
    in memory for the segment is still the truth (no one else can have written)."""


class SegmentLeases:
    def __init__(
        self,
        segments: SegmentRepo,
        owner: str,
        lease_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owner = owner
        self._segments = segments
        self._seconds = lease_seconds
        self._monotonic = monotonic
        self._deadlines: dict[str, float] = {}
        self._used: dict[str, float] = {}

    async def hold(self, segment_id: str) -> Holding:
        """Take or renew the lease when less than half of it is left (one write), else
        answer from memory."""
        start = self._monotonic()
        self._used[segment_id] = start
        deadline = self._deadlines.get(segment_id)
        if deadline is not None and deadline - start > self._seconds / 2:
            return Holding(held=True, continuous=True)
        if not await self._claim(segment_id):
            return Holding(held=False, continuous=False)
        return Holding(held=True, continuous=deadline is not None and deadline > start)

    async def keep(self, segment_id: str) -> None:
        """Hold the segment's lease until cancelled, as asks would; return once it is
        lost or had lapsed in between (whatever was built meanwhile may be stale).

        For a rebuild of the segment's optimiser, which can outlast the lease: the asks
        waiting for it hold the task's lock, and so does the reconcile loop that would
        otherwise renew the lease (it tops tasks up under that lock)."""
        while True:
            await asyncio.sleep(self._seconds / 4)
            if not (await self.hold(segment_id)).continuous:
                return

    async def renew(self) -> list[str]:
        """Renew the leases of segments used lately (from the reconcile loop) and give
        up the others (a finished task, a study nobody asks); returns those given up."""
        now = self._monotonic()
        idle_after = IDLE_LEASES * self._seconds
        idle = [s for s in self._deadlines if now - self._used.get(s, now) > idle_after]
        for segment_id in idle:
            self.forget(segment_id)
        await self._segments.release(idle, self.owner)
        for segment_id in list(self._deadlines):
            deadline = self._deadlines[segment_id]
            if deadline <= now:  # lapsed: the next hold takes it afresh, not continuous
                self.forget(segment_id)
            elif deadline - now <= self._seconds / 2:
                await self._claim(segment_id)
        return idle

    async def _claim(self, segment_id: str) -> bool:
        """Take or renew the lease in MongoDB; its local deadline is counted from before
        the write. On refusal the lease is forgotten here."""
        start = self._monotonic()
        now = utcnow()
        until = now + timedelta(seconds=self._seconds)
        if not await self._segments.claim(segment_id, self.owner, now, until):
            self.forget(segment_id)
            return False
        self._deadlines[segment_id] = start + self._seconds
        return True

    def forget(self, segment_id: str) -> None:
        self._deadlines.pop(segment_id, None)
        self._used.pop(segment_id, None)

    async def release_all(self) -> None:
        held = list(self._deadlines)
        self._deadlines.clear()
        await self._segments.release(held, self.owner)
