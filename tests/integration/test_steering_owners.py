"""Several steering processes on one database: each segment has one owner at a time.

Two steering services (``a`` and ``b``) share a memory store and bus. Results are
written straight into the store, as the api would. The owner generates; the other one
does nothing for that segment; when the owner dies without a word its lease runs out
and the other takes the segment over, rebuilding the optimiser from the database and
going on at the next index; and an online ask that reaches a process which does not
own the study is forwarded to the owner over the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from services.api.hopaas_properties import StudySpec
from services.api.online import ensure_study
from services.api.schemas import TaskSubmission
from services.api.submission import build_task
from services.context import Context, open_context
from services.steering import engine
from services.steering.app import SteeringService
from services.steering.sampler import SegmentOptimizer
from shared.config import SteeringSettings, load
from shared.domain.models import PointStatus
from shared.domain.taskconfig import SteeringConfig, TaskConfig
from shared.online import AskReply, AskRequest
from shared.searchspace import parse_search_space
from tests.integration.central import file_artifacts

LEASE = 1.0
SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -2, "high": 2}},
    "y": {"method": "uniform", "dimension": {"low": -2, "high": 2}},
}

Start = Callable[..., "contextlib.AbstractAsyncContextManager[SteeringService]"]


@pytest.fixture
def start(store_url: str, bus_prefix: str, tmp_path: Path) -> Start:
    @contextlib.asynccontextmanager
    async def steering(name: str, lease: float = LEASE) -> AsyncIterator[SteeringService]:
        settings = load(
            SteeringSettings,
            mongo_url=store_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
            dev_mode=True,
            steering_instance=name,
            steering_lease_seconds=lease,
        )
        ctx = await open_context(settings)
        service = SteeringService(ctx, settings)
        await service.start()
        try:
            yield service
        finally:
            await service.stop()
            await ctx.close()

    return steering


async def submit(ctx: Context, **config: Any) -> str:
    submission = TaskSubmission(
        config=TaskConfig(evaluationExec="true", **config), searchSpace=SPACE
    )
    task, segments = build_task(submission, "alice", max_files_bytes=10_000)
    await ctx.store.segments.insert_many(segments)
    await ctx.store.tasks.insert(task)
    return task.id


async def evaluate_open(ctx: Context, task_id: str) -> int:
    """Evaluate every open point, as jobs reporting through the api would."""
    done = 0
    for point in await ctx.store.points.list_for_task(task_id):
        if point.status is PointStatus.UNEVALUATED:
            job_id = await ctx.store.points.start_attempt(point)
            assert job_id is not None
            loss = (point.params["x"] - 1) ** 2 + point.params["y"] ** 2
            assert await ctx.store.points.record_result(point.id, job_id, loss)
            done += 1
    return done


async def indices(ctx: Context, task_id: str) -> list[int]:
    return [p.index for p in await ctx.store.points.list_for_task(task_id)]


async def test_one_owner_generates_and_the_other_takes_over_when_it_dies(start: Start) -> None:
    async with start("a") as a, start("b") as b:
        task_id = await submit(a.ctx, maxPoints=12, nPointsPerIteration=2)
        await a.top_up(task_id)
        assert await indices(a.ctx, task_id) == [0, 1]
        [segment] = await a.ctx.store.segments.list_for_task(task_id)
        assert segment.owner == "a"

        await evaluate_open(a.ctx, task_id)
        await b.top_up(task_id)  # not the owner: generates nothing
        assert await indices(a.ctx, task_id) == [0, 1]
        await a.top_up(task_id)  # the owner, with its kept optimiser
        assert await indices(a.ctx, task_id) == [0, 1, 2, 3]
        assert a.engine.rebuilds == 1

        # "a" dies without releasing its lease: "b" waits for it to run out.
        await evaluate_open(a.ctx, task_id)
        await b.top_up(task_id)
        assert await indices(a.ctx, task_id) == [0, 1, 2, 3]
        await asyncio.sleep(LEASE * 1.2)
        await b.top_up(task_id)
        assert await indices(a.ctx, task_id) == [0, 1, 2, 3, 4, 5]
        [segment] = await b.ctx.store.segments.list_for_task(task_id)
        assert segment.owner == "b"
        assert b.engine.rebuilds == 1

        # "a" comes back: it lost the segment, so it draws nothing and drops its optimiser.
        await evaluate_open(a.ctx, task_id)
        await a.top_up(task_id)
        assert await indices(a.ctx, task_id) == [0, 1, 2, 3, 4, 5]
        await b.top_up(task_id)
        points = await b.ctx.store.points.list_for_task(task_id)
        assert [p.index for p in points] == list(range(8))
        assert len({p.key for p in points}) == 8


async def test_a_lapsed_lease_means_a_rebuild_even_when_retaken(start: Start) -> None:
    async with start("a") as a, start("b") as b:
        task_id = await submit(a.ctx, maxPoints=12, nPointsPerIteration=2)
        await a.top_up(task_id)
        await evaluate_open(a.ctx, task_id)
        await asyncio.sleep(LEASE * 1.2)
        await b.top_up(task_id)  # "b" takes the segment over and draws 2, 3
        await evaluate_open(a.ctx, task_id)
        await b.stop()  # a clean stop gives the lease back at once
        await a.top_up(task_id)  # "a" takes it again: what it kept is stale
        assert a.engine.rebuilds == 2
        assert await indices(a.ctx, task_id) == [0, 1, 2, 3, 4, 5]


def study(title: str) -> StudySpec:
    return StudySpec(
        title=title,
        direction="minimize",
        steering=SteeringConfig(library="optuna", algorithm="tpe", seed=3),
        pruner="NopPruner",
        pruner_args={},
        space=SPACE,
    )


async def test_an_ask_reaching_another_process_is_answered_by_the_owner(start: Start) -> None:
    async with start("a") as a, start("b") as b:
        task_id = (await ensure_study(a.ctx, "alice", study("owners"))).id
        first = await a.online.handle(AskRequest(task_id=task_id, owner="alice", ask_id="q1"))
        assert isinstance(first, AskReply) and first.index == 0, first
        second = await b.online.handle(AskRequest(task_id=task_id, owner="alice", ask_id="q2"))
        assert isinstance(second, AskReply) and second.index == 1, second
        assert b.engine.rebuilds == 0  # "b" forwarded; "a" drew from what it keeps
        assert a.engine.rebuilds == 1
        again = await b.online.handle(AskRequest(task_id=task_id, owner="alice", ask_id="q2"))
        assert isinstance(again, AskReply) and again.index == 1  # the retried ask: same trial


async def test_reconciling_never_waits_for_a_study(start: Start) -> None:
    """A study's lock is held while one of its asks draws, or while its optimiser is
    rebuilt (minutes for a large study); the reconcile loop, which renews every lease
    this process holds, must not queue behind it: a study gets points from asks only."""
    async with start("a") as a:
        task_id = (await ensure_study(a.ctx, "alice", study("busy"))).id
        async with a.engine.locks[task_id]:
            await asyncio.wait_for(a.reconcile(), timeout=5)


async def test_a_rebuild_outlives_the_ask_that_started_it(start: Start) -> None:
    """A takeover of a large study can take longer than an ask may wait: the ask that
    times out must not cancel the rebuild, or no later ask could ever be answered.
    (A lease longer than any rebuild here: one that lapses is rebuilt again by design.)"""
    async with start("a", lease=600.0) as a:
        task_id = await submit(
            a.ctx,
            maxPoints=1000,
            nPointsPerIteration=300,
            steering={"library": "nevergrad", "algorithm": "NGOpt"},
        )
        await a.top_up(task_id)
        await evaluate_open(a.ctx, task_id)
        a.engine.forget(f"{task_id}.main")  # as after a restart: rebuild from 300 points
        task = await a.ctx.store.tasks.get(task_id)
        [segment] = await a.ctx.store.segments.list_for_task(task_id)
        assert task is not None
        space = parse_search_space(segment.search_space)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(a.engine.optimizer(task, segment, space), timeout=0.05)
        while a.engine.rebuilds < 2:  # the rebuild goes on with no one waiting for it
            await asyncio.sleep(0.1)
        optimizer = await a.engine.optimizer(task, segment, space)
        assert optimizer.count == 300
        assert a.engine.rebuilds == 2  # the next ask took the finished rebuild


async def test_a_rebuild_longer_than_the_lease_keeps_the_segment(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is held while the optimiser is rebuilt. Nothing else renews it then
    (the asks waiting for the rebuild hold the task's lock, which the reconcile loop
    needs too); had it lapsed, the next ask would throw the rebuilt optimiser away and
    rebuild, for ever if every rebuild outlasts the lease."""

    def slow(*args: Any, **kwargs: Any) -> SegmentOptimizer:
        time.sleep(LEASE * 2.5)  # in the rebuild's worker thread, as a long replay
        return SegmentOptimizer(*args, **kwargs)

    monkeypatch.setattr(engine, "SegmentOptimizer", slow)
    async with start("a") as a:
        task_id = await submit(a.ctx, maxPoints=12, nPointsPerIteration=2)
        await a.top_up(task_id)
        await evaluate_open(a.ctx, task_id)
        await a.top_up(task_id)
        assert a.engine.rebuilds == 1
        assert await indices(a.ctx, task_id) == [0, 1, 2, 3]


async def test_the_optimiser_plans_for_the_steering_budget(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nevergrad picks its strategy from the budget: the steering block's when given,
    else the task's maxPoints."""
    budgets: list[int | None] = []
    real = engine.SegmentOptimizer

    def spy(*args: Any, **kwargs: Any) -> engine.SegmentOptimizer:
        budgets.append(kwargs["budget"])
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "SegmentOptimizer", spy)
    async with start("a") as a:
        ngopt = {"library": "nevergrad", "algorithm": "NGOpt"}
        for steering in ({**ngopt, "budget": 50}, ngopt):
            await a.top_up(await submit(a.ctx, maxPoints=500, steering=steering))
    assert sorted(b or 0 for b in budgets) == [50, 500]
