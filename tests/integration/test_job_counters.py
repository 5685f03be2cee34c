"""The task's open jobs and the site's assigned jobs are sets the store keeps beside
each job's move, not counts of jobs: a process killed between a job's write and its
count's write leaves an id too many, which holds back a job (never lets one too many
run) until the owning service's periodic pass drops it; a repeated pass changes nothing.

Driven step by step on SecantusDB, without timing: the state such a kill leaves is
written with the store's own calls, then the service runs once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.broker.app import BrokerService
from services.context import Context, open_context
from services.jobbuilder.app import JobBuilderService
from shared.config import ApiSettings, BrokerSettings, load
from shared.domain.models import JobStatus, Point, PointOutcome, Segment, Site, Task, TaskStatus
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


async def two_point_task(ctx: Context) -> None:
    """A running task of two waiting points, one job at a time."""
    store = ctx.store
    config = TaskConfig.model_validate(
        {"evaluationExec": "true", "maxPoints": 2, "nParallelEvaluation": 1}
    )
    await store.tasks.insert(Task(id="t1", owner="alice", config=config, status=TaskStatus.RUNNING))
    await store.segments.insert_many(
        [Segment(id="t1.main", task_id="t1", name="main", index=0, search_space={})]
    )
    for index in range(2):
        params = {"x": index / 2}
        assert await store.points.insert(
            Point(
                id=f"t1.main.{index}",
                task_id="t1",
                segment="main",
                index=index,
                params=params,
                key=canonical_key(params),
            )
        )


async def open_jobs(ctx: Context) -> list[str]:
    task = await ctx.store.tasks.get("t1")
    assert task is not None
    return task.open_jobs


async def test_a_job_builder_killed_after_applying_holds_back_the_next_job_until_its_pass(
    ctx: Context,
) -> None:
    store = ctx.store
    await two_point_task(ctx)
    builder = JobBuilderService(ctx)
    await builder.build("t1")
    [first] = await open_jobs(ctx)
    job = await store.jobs.get(first)
    assert job is not None and job.status is JobStatus.DEFINED
    await store.jobs.col.update_one(
        {"_id": first}, {"$set": {"status": JobStatus.LEASED.value, "generation": 1}}
    )
    outcome = PointOutcome(point_id=job.point_ids[0], loss=0.5)
    assert await store.jobs.finish(first, 1, [outcome])
    finished = await store.jobs.get(first)
    assert finished is not None
    await builder.apply(finished)
    assert await open_jobs(ctx) == []
    # What a kill -9 between the job's "applied" and the task's count leaves behind:
    await store.tasks.repair_open_jobs("t1", [first], [])

    await builder.build("t1")  # a trigger: the stale id holds the one slot
    assert await open_jobs(ctx) == [first]
    assert await store.jobs.count("t1", active_only=True) == 0

    await builder.reconcile()  # the periodic pass drops it and defines the next job
    [second] = await open_jobs(ctx)
    assert second != first
    assert await store.jobs.count("t1", active_only=True) == 1
    await builder.reconcile()  # repeated: nothing moves twice
    await builder.apply(finished)
    assert await open_jobs(ctx) == [second]
    assert await store.jobs.count("t1", active_only=True) == 1
    task = await store.tasks.get("t1")
    assert task is not None and task.jobs_counted == 2


async def test_a_broker_killed_between_the_sites_count_and_the_assignment_is_put_right(
    ctx: Context,
) -> None:
    store = ctx.store
    await two_point_task(ctx)
    await JobBuilderService(ctx).build("t1")
    [job_id] = await open_jobs(ctx)
    await store.sites.heartbeat(Site(id="siteA", free_slots=1))
    # What a kill -9 between the site's count and the job's move leaves behind (the job
    # still defined), and an id of a job that is no more:
    await store.sites.repair_assigned("siteA", [job_id, "gone.a1"], [])
    broker = BrokerService(ctx, load(BrokerSettings, dev_mode=True))

    await broker.assign()  # a trigger: the site looks full, nothing is assigned
    job = await store.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.DEFINED

    await broker.reconcile()  # the periodic pass puts the count right, then assigns
    job = await store.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.ASSIGNED and job.site == "siteA"
    site = await store.sites.get("siteA")
    assert site is not None and site.assigned_jobs == [job_id]
    await broker.reconcile()  # repeated: nothing moves twice
    site = await store.sites.get("siteA")
    assert site is not None and site.assigned_jobs == [job_id]
    assert await store.jobs.count_assigned("siteA") == 1


async def test_a_new_job_builder_puts_a_tasks_open_jobs_right_at_its_first_build(
    ctx: Context,
) -> None:
    """A restarted process (or one upgraded from records without the field) does not
    wait for its periodic pass: a set one short would let a job too many run."""
    store = ctx.store
    await two_point_task(ctx)
    await JobBuilderService(ctx).build("t1")
    [first] = await open_jobs(ctx)
    await store.tasks.repair_open_jobs("t1", [], [first])  # as a record without the field

    await JobBuilderService(ctx).build("t1")  # a new process's first build of the task

    assert await open_jobs(ctx) == [first]
    assert await store.jobs.count("t1", active_only=True) == 1
