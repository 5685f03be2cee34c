"""The steering service: keeps every active segment supplied with points.

Triggered by ``task.submitted`` and by results (``point.evaluated``, ``point.failed``),
and by the periodic reconcile pass over all active tasks, so a lost message only delays
generation. Point ids are derived from (task, segment, index) and unique in the
database, so two steering processes racing on a segment cannot create a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from services.consumer import BusConsumer
from services.context import Context
from services.steering.algorithms.base import SteeringUnavailable
from services.steering.container import (
    check_workdir_root,
    run_segmented_steering_container,
    run_steering_container,
)
from services.steering.idds_format import SegmentInput
from services.steering.logic import SegmentCounts, points_to_generate, task_seed
from services.steering.online import OnlineSteering
from services.steering.sampler import draw
from shared.config import SteeringSettings
from shared.domain.models import Point, PointStatus, Segment, Task, TaskStatus
from shared.messages import Message, PointsGenerated, TaskFinished
from shared.runtime import open_runtime
from shared.searchspace import SearchSpace, canonical_key, parse_search_space

log = logging.getLogger(__name__)

ROUTING_KEYS = ("task.submitted", "point.evaluated", "point.failed")
GENERATING = (TaskStatus.SUBMITTED, TaskStatus.RUNNING)


def point_id(task_id: str, segment: str, index: int) -> str:
    return f"{task_id}.{segment}.{index}"


class SteeringService(BusConsumer):
    name = "steering"
    routing_keys = ROUTING_KEYS

    def __init__(self, ctx: Context, settings: SteeringSettings) -> None:
        super().__init__(ctx)
        self.settings = settings
        self.runtime = open_runtime(settings.steering_runtime)

    async def start(self) -> None:
        check_workdir_root(self.settings.workdir)  # fail at start, not at the first task
        await super().start()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.online = OnlineSteering(self.ctx)
        await self.online.start()

    async def stop(self) -> None:
        online: OnlineSteering | None = getattr(self, "online", None)
        if online is not None:
            await online.stop()
        await super().stop()

    async def on_message(self, message: Message) -> None:
        task_id = getattr(message, "task_id", None)
        if isinstance(task_id, str):
            await self.top_up(task_id)

    async def reconcile(self) -> None:
        for task in await self.ctx.store.tasks.list_active():
            await self.top_up(task.id)

    async def top_up(self, task_id: str) -> None:
        async with self._locks[task_id]:
            task = await self.ctx.store.tasks.get(task_id)
            if task is None or task.status not in GENERATING or task.config.online:
                return
            segments = await self.ctx.store.segments.list_for_task(task_id)
            if task.config.steeringExec and task.config.segmented:
                await self._top_up_by_segmented_container(task, segments)
            else:
                for segment in segments:
                    if not segment.exhausted:
                        await self._top_up_segment(task, segment)
            if task.status is TaskStatus.SUBMITTED:
                await self.ctx.store.tasks.transition(task_id, TaskStatus.RUNNING)

    async def _top_up_segment(self, task: Task, segment: Segment) -> None:
        store = self.ctx.store
        history = await store.points.list_for_segment(task.id, segment.name)
        open_points = sum(
            p.status in (PointStatus.UNEVALUATED, PointStatus.PENDING) for p in history
        )
        counts = SegmentCounts(total=len(history), open=open_points)
        wanted = points_to_generate(task.config, counts)
        if wanted == 0:
            if counts.total >= task.config.maxPoints:
                await store.segments.mark_exhausted(segment.id)
            return
        try:
            space = parse_search_space(segment.search_space)
        except ValueError as exc:
            await self._fail(task, f"search space of segment {segment.name}: {exc}")
            return
        if task.config.steeringExec:
            drawn = await self._ask_container(task, segment, space, history, wanted)
            if drawn is None:
                return
            params_list, search_over = drawn
        else:
            config = task.config
            try:
                result = await asyncio.to_thread(
                    draw,
                    space,
                    history,
                    wanted,
                    steering=config.steering,
                    seed=task_seed(task.id, config.steering.seed),
                    parallelism=max(config.nParallelEvaluation, config.nPointsPerIteration),
                    failed_points=config.failedPoints,
                    budget=config.maxPoints,
                )
            except SteeringUnavailable as exc:
                await self._fail(task, f"steering: {exc}")
                return
            params_list, search_over = result.points, result.exhausted
        await self._store_points(task, segment, len(history), params_list, search_over)

    async def _store_points(
        self,
        task: Task,
        segment: Segment,
        first_index: int,
        params_list: list[dict[str, Any]],
        search_over: bool,
    ) -> None:
        store = self.ctx.store
        created: list[str] = []
        for offset, params in enumerate(params_list):
            index = first_index + offset
            point = Point(
                id=point_id(task.id, segment.name, index),
                task_id=task.id,
                segment=segment.name,
                index=index,
                params=params,
                key=canonical_key(params),
            )
            if not await store.points.insert(point):
                log.info("point %s exists already (another steering won the race)", point.id)
                break
            created.append(point.id)
        if search_over or first_index + len(created) >= task.config.maxPoints:
            await store.segments.mark_exhausted(segment.id)
        if created:
            log.info("task %s segment %s: %d new points", task.id, segment.name, len(created))
            await self.ctx.bus.publish(
                PointsGenerated(task_id=task.id, segment=segment.name, point_ids=created)
            )

    async def _ask_container(
        self,
        task: Task,
        segment: Segment,
        space: SearchSpace,
        history: list[Point],
        wanted: int,
    ) -> tuple[list[dict[str, Any]], bool] | None:
        """Run the user's steering program; None when it failed for good (task failed)."""
        config = task.config
        assert config.steeringExec is not None
        result = await run_steering_container(
            config.steeringExec,
            config.steeringContainer,
            self.runtime,
            space,
            history,
            wanted,
            config.maxPoints,
            workdir_root=self.settings.workdir,
            attempt_timeout=self.settings.steering_attempt_timeout,
            attempts=self.settings.steering_attempts,
            failed_loss=config.failedPointLoss,
            opt_space_form=segment.space_form,
            files=task.files,
        )
        for warning in result.warnings:
            log.warning("task %s steering container: %s", task.id, warning)
        if not result.ok:
            await self._fail(task, f"steering container: {result.reason}")
            return None
        return result.points, result.search_over

    async def _top_up_by_segmented_container(self, task: Task, segments: list[Segment]) -> None:
        """One round of the user's program for every segment that needs points: it is
        shown all segments (``model_id`` = segment index) and answers per segment."""
        config = task.config
        assert config.steeringExec is not None
        inputs: list[SegmentInput] = []
        for segment in segments:
            history = await self.ctx.store.points.list_for_segment(task.id, segment.name)
            open_points = sum(
                p.status in (PointStatus.UNEVALUATED, PointStatus.PENDING) for p in history
            )
            counts = SegmentCounts(total=len(history), open=open_points)
            wanted = 0 if segment.exhausted else points_to_generate(config, counts)
            if wanted == 0 and counts.total >= config.maxPoints and not segment.exhausted:
                await self.ctx.store.segments.mark_exhausted(segment.id)
            try:
                space = parse_search_space(segment.search_space)
            except ValueError as exc:
                await self._fail(task, f"search space of segment {segment.name}: {exc}")
                return
            inputs.append(SegmentInput(segment.index, space, history, wanted))
        if all(i.num_points == 0 for i in inputs):
            return
        forms = {s.space_form for s in segments}
        result = await run_segmented_steering_container(
            config.steeringExec,
            config.steeringContainer,
            self.runtime,
            inputs,
            config.maxPoints,
            workdir_root=self.settings.workdir,
            attempt_timeout=self.settings.steering_attempt_timeout,
            attempts=self.settings.steering_attempts,
            failed_loss=config.failedPointLoss,
            opt_space_form=forms.pop() if len(forms) == 1 else "phpo",
            files=task.files,
        )
        for warning in result.warnings:
            log.warning("task %s steering container: %s", task.id, warning)
        if not result.ok:
            await self._fail(task, f"steering container: {result.reason}")
            return
        for segment, given in zip(segments, inputs, strict=True):
            outcome = result.segments.get(segment.index)
            if outcome is not None and given.num_points > 0:
                await self._store_points(
                    task, segment, len(given.history), outcome.points, outcome.search_over
                )

    async def _fail(self, task: Task, reason: str) -> None:
        if await self.ctx.store.tasks.transition(task.id, TaskStatus.FAILED, reason=reason):
            await self.ctx.bus.publish(TaskFinished(task_id=task.id, status="failed"))
