"""The steering side of online ask-and-tell: answers ``AskRequest`` over the bus.

Per study, one ask at a time in this process (a lock); across processes the unique
(task, segment, index) of points decides, and the loser draws again on the new history,
unless the winner answered the same ask: (task, ask id) is unique too, so the loser
then replies with the winner's trial.
Each ask rebuilds the study's optimiser from its stored trials (``draw``, in a thread,
as for batch tasks), so any steering process can answer any study. An ask carries its
own id: a retried request gets the trial its first attempt created.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from services.context import Context
from services.steering.algorithms.base import SteeringUnavailable
from services.steering.logic import task_seed
from services.steering.sampler import draw
from shared.bus import Subscription
from shared.domain.models import ACTIVE_TASK_STATES, Point, PointStatus
from shared.messages import Message
from shared.online import STEERING_TARGET, AskReply, AskRequest, trial_point_id
from shared.searchspace import canonical_key, parse_search_space

log = logging.getLogger(__name__)

INSERT_ATTEMPTS = 5


class OnlineSteering:
    """Serves the ``steering`` request target for the steering service."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._server: Subscription | None = None

    async def start(self) -> None:
        self._server = await self.ctx.bus.serve(STEERING_TARGET, self.handle)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.cancel()
            self._server = None

    async def handle(self, message: Message) -> Message:
        if not isinstance(message, AskRequest):
            raise TypeError(f"steering does not answer {type(message).__name__}")
        async with self._locks[message.task_id]:
            return await self.ask(message)

    async def ask(self, request: AskRequest) -> AskReply:
        store = self.ctx.store
        task = await store.tasks.get_for_owner(request.task_id, request.owner)
        if task is None or await store.studies.get(task.id) is None:
            return AskReply(error=f"no study {request.task_id}", not_found=True)
        if task.status not in ACTIVE_TASK_STATES:
            return AskReply(error=f"study {task.id} is {task.status.value}")
        earlier = await store.studies.trial_for_ask(task.id, request.ask_id)
        if earlier is not None:
            return _reply(earlier)
        segments = await store.segments.list_for_task(task.id)
        if not segments:
            return AskReply(error=f"study {task.id} has no search space", not_found=True)
        segment = segments[0]
        space = parse_search_space(segment.search_space)
        config = task.config
        for _ in range(INSERT_ATTEMPTS):
            history = await store.points.list_for_segment(task.id, segment.name)
            open_trials = sum(p.status is PointStatus.PENDING for p in history)
            try:
                drawn = await asyncio.to_thread(
                    draw,
                    space,
                    history,
                    1,
                    steering=config.steering,
                    seed=task_seed(task.id, config.steering.seed),
                    parallelism=open_trials + 1,
                    failed_points=config.failedPoints,
                    budget=config.maxPoints,
                )
            except SteeringUnavailable as exc:
                return AskReply(error=f"steering: {exc}")
            if not drawn.points:
                if drawn.exhausted:
                    return AskReply(error="the search space is exhausted")
                return AskReply(error="no new point now: tell the open trials first")
            index = len(history)
            params = drawn.points[0]
            point = Point(
                id=trial_point_id(task.id, segment.name, index),
                task_id=task.id,
                segment=segment.name,
                index=index,
                params=params,
                key=canonical_key(params),
                status=PointStatus.PENDING,
                attempts=1,
            )
            if await store.studies.insert_trial(point, request.ask_id):
                log.info("study %s: trial %d asked", task.id, index)
                return _reply(point)
            earlier = await store.studies.trial_for_ask(task.id, request.ask_id)
            if earlier is not None:  # another process answered this ask meanwhile
                return _reply(earlier)
            log.info("study %s: trial %d taken by another process, drawing again", task.id, index)
        return AskReply(error="too many concurrent asks, try again")


def _reply(point: Point) -> AskReply:
    return AskReply(index=point.index, point_id=point.id, params=point.params)
