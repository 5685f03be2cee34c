"""The job builder between its writes: a result half applied (a crash, or a concurrent
pass) is finished by the next pass, and the task is not done before its best is known.

Driven step by step on SecantusDB, without timing: the state a crash or a slow apply
leaves is written with the store's own calls, then the job builder is run once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.context import Context, open_context
from services.jobbuilder.app import JobBuilderService
from shared.config import ApiSettings, load
from shared.domain.models import Job, JobStatus, Point, PointOutcome, Segment, Task, TaskStatus
from shared.domain.taskconfig import TaskConfig
from shared.searchspace import canonical_key

pytestmark = [pytest.mark.mongo]


@pytest.fixture
async def ctx(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Context]:
    settings = load(
        ApiSettings,
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=f"file://{tmp_path}",
        dev_mode=True,
    )
    context = await open_context(settings)
    try:
        yield context
    finally:
        await context.close()


async def finished_job(ctx: Context, loss: float) -> Job:
    """A one-point task whose only job has finished with ``loss``, not applied yet."""
    store = ctx.store
    config = TaskConfig.model_validate({"evaluationExec": "true", "maxPoints": 1})
    task = Task(id="t1", owner="alice", config=config, status=TaskStatus.RUNNING)
    await store.tasks.insert(task)
    await store.segments.insert_many(
        [Segment(id="t1.main", task_id="t1", name="main", index=0, search_space={}, exhausted=True)]
    )
    params = {"x": 0.5}
    point = Point(
        id="t1.main.0",
        task_id="t1",
        segment="main",
        index=0,
        params=params,
        key=canonical_key(params),
    )
    assert await store.points.insert(point)
    job_id = await store.points.start_attempt(point)
    assert job_id is not None
    job = Job(
        id=job_id,
        task_id="t1",
        owner="alice",
        segment="main",
        point_ids=[point.id],
        attempt=1,
        site="siteA",
    )
    assert await store.jobs.insert(job)
    await store.jobs.col.update_one(
        {"_id": job_id}, {"$set": {"status": JobStatus.LEASED.value, "generation": 1}}
    )
    assert await store.jobs.finish(job_id, 1, [PointOutcome(point_id=point.id, loss=loss)])
    stored = await store.jobs.get(job_id)
    assert stored is not None
    return stored


async def test_a_result_recorded_by_a_pass_that_crashed_still_becomes_the_best(
    ctx: Context,
) -> None:
    job = await finished_job(ctx, 0.25)
    # The pass that crashed got as far as the point's update.
    assert await ctx.store.points.record_result(job.point_ids[0], job.id, 0.25)

    await JobBuilderService(ctx).reconcile()

    task = await ctx.store.tasks.get("t1")
    assert task is not None
    assert (task.best_loss, task.best_point_id) == (0.25, job.point_ids[0])
    assert task.status is TaskStatus.DONE


async def test_a_task_is_not_done_while_a_result_is_being_applied(ctx: Context) -> None:
    job = await finished_job(ctx, 0.25)
    # Another pass is between the point's update and the task's best.
    assert await ctx.store.points.record_result(job.point_ids[0], job.id, 0.25)

    await JobBuilderService(ctx).build("t1")

    task = await ctx.store.tasks.get("t1")
    assert task is not None
    assert task.status is not TaskStatus.DONE, "done while its best was not recorded"


async def test_two_job_builders_at_once_never_exceed_the_parallelism(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job builder processes triggered for the same task at the same moment (scale out:
    competing consumers) define its free slots once between them, even when each counts
    the task's active jobs before another's new jobs are in."""
    store = ctx.store
    listing = store.points.list_for_task
    calls = 0

    async def staggered(*args: Any, **kwargs: Any) -> Any:
        # the k-th reader of the waiting points gets them k steps later: every builder
        # has counted the active jobs by then, and each finds points the last one left
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05 * calls)
        return await listing(*args, **kwargs)

    monkeypatch.setattr(store.points, "list_for_task", staggered)
    config = TaskConfig.model_validate(
        {"evaluationExec": "true", "maxPoints": 20, "nParallelEvaluation": 3}
    )
    await store.tasks.insert(Task(id="t2", owner="alice", config=config, status=TaskStatus.RUNNING))
    await store.segments.insert_many(
        [Segment(id="t2.main", task_id="t2", name="main", index=0, search_space={})]
    )
    for index in range(12):
        params = {"x": index / 12}
        point = Point(
            id=f"t2.main.{index}",
            task_id="t2",
            segment="main",
            index=index,
            params=params,
            key=canonical_key(params),
        )
        assert await store.points.insert(point)
    # two processes' worth of job builders (each its own lock holder and local locks)
    builders = [JobBuilderService(ctx) for _ in range(4)]
    await asyncio.gather(*(b.build("t2") for b in builders))
    assert await store.jobs.count("t2", active_only=True) == 3
    task = await store.tasks.get("t2")
    assert task is not None and task.jobs_counted == 3
