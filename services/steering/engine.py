"""The optimisers this steering process keeps, one per segment it owns.

A segment's optimiser lives in the process that holds the segment's lease
(:mod:`.leases`). Before each draw the engine asks the database only for what changed
since the optimiser last looked (new points, open points that settled) and tells the
optimiser those; it rebuilds from the whole history only when it has none, when its
lease lapsed in between (another process may have drawn), or when the optimiser cannot
follow (:class:`StaleOptimizerError`). So the cost of a draw is the sampler's own, not
one proportional to the number of stored points.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict

from services.steering.algorithms import resolve_directions
from services.steering.leases import SegmentLeases
from services.steering.logic import segment_base_seed, task_seed
from services.steering.sampler import SegmentOptimizer, StaleOptimizerError
from services.steering.warmstart import WarmStart, refusal, warm_start
from shared.domain.models import Point, Segment, Task
from shared.searchspace import SearchSpace
from shared.store import Store

log = logging.getLogger(__name__)

MAX_KEPT = 500
"""Optimisers kept at once; the least recently used one beyond that is rebuilt when
its segment is next drawn for."""


class NotOwnerError(Exception):
    """Another steering process holds the segment's lease."""


class SteeringEngine:
    def __init__(self, store: Store, leases: SegmentLeases, max_kept: int = MAX_KEPT) -> None:
        self.store = store
        self.leases = leases
        self._kept: OrderedDict[str, SegmentOptimizer] = OrderedDict()
        self._max_kept = max_kept
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        """One draw at a time per task, shared by batch generation and online asks."""
        self.rebuilds = 0
        self._building: dict[str, asyncio.Task[SegmentOptimizer]] = {}
        """Rebuilds under way, by segment id."""

    @property
    def owner(self) -> str:
        return self.leases.owner

    async def optimizer(self, task: Task, segment: Segment, space: SearchSpace) -> SegmentOptimizer:
        """The segment's optimiser, up to date with the database. Hold the task's lock
        from here until the drawn points are stored (or :meth:`forget` called).

        Raises NotOwnerError when another process owns the segment.
        """
        holding = await self.leases.hold(segment.id)
        if not holding.held:
            self.forget(segment.id)
            raise NotOwnerError(segment.id)
        kept = self._kept.get(segment.id) if holding.continuous else None
        if kept is not None:
            changed = await self.store.points.changed_for_segment(
                task.id, segment.name, kept.count, kept.open_indices
            )
            try:
                kept.settle(changed)
            except StaleOptimizerError as exc:
                log.info("segment %s: rebuilding its optimiser (%s)", segment.id, exc)
            else:
                self._kept.move_to_end(segment.id)
                return kept
        building = self._building.get(segment.id)
        if building is None:
            building = asyncio.create_task(self._rebuild(task, segment, space))
            self._building[segment.id] = building
            building.add_done_callback(lambda _: self._building.pop(segment.id, None))
        # Shielded: an ask that times out while a long rebuild runs (a takeover of a large
        # study) must not cancel it, or no ask could ever finish; the next one waits for it.
        return await asyncio.shield(building)

    async def _rebuild(self, task: Task, segment: Segment, space: SearchSpace) -> SegmentOptimizer:
        # The lease is held throughout: were it to lapse during a rebuild longer than
        # the lease, the next ask would find it not continuous and rebuild again, and
        # again, never answering (a CMA-ES study of 10k points did so).
        keeper = asyncio.create_task(self.leases.keep(segment.id))
        try:
            history = await self.store.points.list_for_segment(task.id, segment.name)
            config = task.config
            warm = await self._warm_start(task, segment, space, history)
            optimizer = await asyncio.to_thread(
                SegmentOptimizer,
                space,
                history,
                steering=config.steering,
                seed=segment_base_seed(task_seed(task.id, config.steering.seed), segment.index),
                parallelism=max(config.nParallelEvaluation, config.nPointsPerIteration),
                failed_points=config.failedPoints,
                budget=config.steering.budget or config.maxPoints,
                warm=warm.observations,
            )
        finally:
            held = not keeper.done()
            keeper.cancel()
        self.rebuilds += 1
        if not held:  # lost or lapsed meanwhile: usable once (point ids are unique), not kept
            problem = keeper.exception()
            log.info("segment %s: lease not held throughout the rebuild (%s)", segment.id, problem)
            return optimizer
        self._kept[segment.id] = optimizer
        while len(self._kept) > self._max_kept:
            self._kept.popitem(last=False)
        return optimizer

    async def _warm_start(
        self, task: Task, segment: Segment, space: SearchSpace, history: list[Point]
    ) -> WarmStart:
        """The points of the tasks in ``warmStartFrom`` (same owner, same segment name)
        that fit the segment's space; skipped ones are logged by reason."""
        config = task.config
        earlier: list[Point] = []
        result = WarmStart()
        for source_id in config.warmStartFrom:
            source = await self.store.tasks.get(source_id)
            reason = refusal(source, task.owner)
            if reason is not None:
                result.skipped[f"task {source_id}: {reason}"] += 1
                continue
            earlier.extend(await self.store.points.list_for_segment(source_id, segment.name))
        if not config.warmStartFrom:
            return result
        directions = resolve_directions(config.steering.directions, history or earlier)
        found = warm_start(space, earlier, failed_points=config.failedPoints, directions=directions)
        found.skipped.update(result.skipped)
        await self.store.segments.set_warm_start(segment.id, found.summary())
        log.info(
            "segment %s: warm start told %d points; skipped %s",
            segment.id,
            found.told,
            dict(found.skipped) or "none",
        )
        return found

    def forget(self, segment_id: str) -> None:
        """Throw the segment's optimiser away (its draw could not be stored)."""
        self._kept.pop(segment_id, None)

    async def renew(self) -> None:
        for segment_id in await self.leases.renew():
            self.forget(segment_id)

    async def release(self) -> None:
        for building in list(self._building.values()):
            building.cancel()
        self._kept.clear()
        await self.leases.release_all()
