"""The steering side of online ask-and-tell: answers ``AskRequest`` over the bus.

Every steering process serves two request targets: the shared ``steering`` one, which
the api asks and RabbitMQ hands to any process, and its own (``steering.<owner>``).
An ask is answered by the owner of the study's segment (:mod:`.leases`) with the
optimiser it keeps in memory (:mod:`.engine`), so an ask costs the sampler's call and a
few small reads and writes, not a rebuild. A process that receives an ask for a study
another live process owns forwards it to that owner's own target; a study nobody owns
is taken by the process that receives the ask. An ask carries its own id: a retried
request gets the trial its first attempt created, and (task, ask id) is unique in the
database, so even two processes racing on one ask store one trial (the loser replies
with the winner's).

The documents of a study that never change (its task's owner and config, the study
record, its segment and space) are read on the first ask a process answers and kept;
the api checks the study's status on its own fresh read before it asks. So an ask
costs the reads of what changed since the last draw and the write of the new trial.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

from services.context import Context
from services.steering.algorithms.base import SteeringUnavailable
from services.steering.engine import NotOwnerError, SteeringEngine
from shared.bus import NoResponderError, RequestError, Subscription
from shared.clock import utcnow
from shared.domain.models import ACTIVE_TASK_STATES, Point, PointStatus, Segment, Task
from shared.messages import Message
from shared.online import STEERING_TARGET, AskReply, AskRequest, trial_point_id
from shared.searchspace import SearchSpace, canonical_key, parse_search_space

log = logging.getLogger(__name__)

INSERT_ATTEMPTS = 5
FORWARD_TIMEOUT = 15.0
"""Less than the api's own timeout, so that the api hears why rather than nothing."""


KEPT_STUDIES = 1000
"""Studies whose unchanging documents a process keeps (least recently asked dropped)."""


@dataclass(frozen=True)
class StudyDocs:
    """What an ask needs of a study and never changes after the study is opened."""

    task: Task
    """As first read: its ``status`` is not kept up to date (the api checks it)."""
    segment: Segment
    space: SearchSpace


def owner_target(owner: str) -> str:
    return f"{STEERING_TARGET}.{owner}"


class OnlineSteering:
    """Serves the ``steering`` request targets for the steering service."""

    def __init__(self, ctx: Context, engine: SteeringEngine) -> None:
        self.ctx = ctx
        self.engine = engine
        self._servers: list[Subscription] = []
        self._studies: OrderedDict[str, StudyDocs] = OrderedDict()
        self._initial_done: set[str] = set()
        """Study segments whose initial points have all been asked."""

    async def start(self) -> None:
        self._servers = [
            await self.ctx.bus.serve(owner_target(self.engine.owner), self.handle_direct),
            await self.ctx.bus.serve(STEERING_TARGET, self.handle),
        ]

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            await server.cancel()

    async def handle(self, message: Message) -> Message:
        """An ask from the api: answered here, or forwarded to the study's owner."""
        request = _ask(message)
        try:
            return await self._answer(request)
        except NotOwnerError as exc:
            return await self._forward(request, str(exc))

    async def handle_direct(self, message: Message) -> Message:
        """An ask forwarded by another steering process: never forwarded again."""
        request = _ask(message)
        try:
            return await self._answer(request)
        except NotOwnerError:
            return AskReply(error="the study is moving between steering processes: ask again")

    async def _forward(self, request: AskRequest, segment_id: str) -> Message:
        owner = await self.ctx.store.segments.owner_of(segment_id, utcnow())
        if owner is None or owner == self.engine.owner:  # the lease just ended: try again
            try:
                return await self._answer(request)
            except NotOwnerError:
                return AskReply(error="the study is moving between steering processes")
        try:
            return await self.ctx.bus.request(owner_target(owner), request, timeout=FORWARD_TIMEOUT)
        except NoResponderError:
            return AskReply(error=f"the owner of study {request.task_id} is gone: ask again")
        except RequestError as exc:
            return AskReply(error=f"the owner of study {request.task_id} did not answer: {exc}")

    async def _answer(self, request: AskRequest) -> AskReply:
        async with self.engine.locks[request.task_id]:
            return await self.ask(request)

    async def ask(self, request: AskRequest) -> AskReply:
        store = self.ctx.store
        docs = self._studies.get(request.task_id)
        if docs is None or docs.task.owner != request.owner:
            found = await self._read_study(request)
            if isinstance(found, AskReply):
                return found
            docs = found
        self._studies.move_to_end(request.task_id)
        if request.retry:
            earlier = await store.studies.trial_for_ask(request.task_id, request.ask_id)
            if earlier is not None:
                return _reply(earlier)
        task, segment, space = docs.task, docs.segment, docs.space
        if not space.dimensions:
            return await self._fixed_trial(task, segment, request.ask_id)
        if segment.initial_points and segment.id not in self._initial_done:
            initial = await self._initial_trial(task, segment, request.ask_id)
            if initial is not None:
                return initial
        for _ in range(INSERT_ATTEMPTS):
            try:
                optimizer = await self.engine.optimizer(task, segment, space)
                drawn = await asyncio.to_thread(optimizer.draw, 1)
            except SteeringUnavailable as exc:
                self.engine.forget(segment.id)
                return AskReply(error=f"steering: {exc}")
            if not drawn.points:
                if drawn.exhausted:
                    return AskReply(error="the search space is exhausted")
                return AskReply(error="no new point now: tell the open trials first")
            index = optimizer.count - 1
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
            self.engine.forget(segment.id)
            earlier = await store.studies.trial_for_ask(task.id, request.ask_id)
            if earlier is not None:  # another process answered this ask meanwhile
                return _reply(earlier)
            log.info("study %s: trial %d taken by another process, drawing again", task.id, index)
        return AskReply(error="too many concurrent asks, try again")

    async def _initial_trial(self, task: Task, segment: Segment, ask_id: str) -> AskReply | None:
        """The next of the study's initial points as this ask's trial, while some is
        not asked yet (the trial index is the number of trials stored, and the
        optimiser, forgotten, is rebuilt with it at the next draw); None once all are."""
        store = self.ctx.store
        holding = await self.engine.leases.hold(segment.id)
        if not holding.held:
            raise NotOwnerError(segment.id)
        for _ in range(INSERT_ATTEMPTS):
            counts = await store.points.count_by_status(task.id, segment.name)
            index = sum(counts.values())
            if index >= len(segment.initial_points):
                self._initial_done.add(segment.id)
                return None
            params = segment.initial_points[index]
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
            self.engine.forget(segment.id)
            if await store.studies.insert_trial(point, ask_id):
                log.info("study %s: initial trial %d asked", task.id, index)
                return _reply(point)
            earlier = await store.studies.trial_for_ask(task.id, ask_id)
            if earlier is not None:
                return _reply(earlier)
        return AskReply(error="too many concurrent asks, try again")

    async def _fixed_trial(self, task: Task, segment: Segment, ask_id: str) -> AskReply:
        """A trial of a study with nothing to sample: every trial has the same (empty)
        parameters, so no optimiser is involved; the next index is the number of trials
        stored, and a lost insert race is retried with the one after."""
        store = self.ctx.store
        for _ in range(INSERT_ATTEMPTS):
            counts = await store.points.count_by_status(task.id, segment.name)
            index = sum(counts.values())
            point = Point(
                id=trial_point_id(task.id, segment.name, index),
                task_id=task.id,
                segment=segment.name,
                index=index,
                params={},
                key=canonical_key({}),
                status=PointStatus.PENDING,
                attempts=1,
            )
            if await store.studies.insert_trial(point, ask_id):
                return _reply(point)
            earlier = await store.studies.trial_for_ask(task.id, ask_id)
            if earlier is not None:
                return _reply(earlier)
        return AskReply(error="too many concurrent asks, try again")

    async def _read_study(self, request: AskRequest) -> StudyDocs | AskReply:
        """The study's documents, read together and kept; or the refusal to send."""
        store = self.ctx.store
        task, study, segments = await asyncio.gather(
            store.tasks.get_for_owner(request.task_id, request.owner),
            store.studies.get(request.task_id),
            store.segments.list_for_task(request.task_id),
        )
        if task is None or study is None:
            return AskReply(error=f"no study {request.task_id}", not_found=True)
        if task.status not in ACTIVE_TASK_STATES:
            return AskReply(error=f"study {task.id} is {task.status.value}")
        if not segments:
            return AskReply(error=f"study {task.id} has no search space", not_found=True)
        segment = segments[0]
        docs = StudyDocs(task, segment, parse_search_space(segment.search_space, allow_empty=True))
        self._studies[task.id] = docs
        while len(self._studies) > KEPT_STUDIES:
            self._studies.popitem(last=False)
        return docs


def _ask(message: Message) -> AskRequest:
    if not isinstance(message, AskRequest):
        raise TypeError(f"steering does not answer {type(message).__name__}")
    return message


def _reply(point: Point) -> AskReply:
    return AskReply(index=point.index, point_id=point.id, params=point.params)
