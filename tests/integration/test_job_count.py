"""The job count a task's budget is checked against is a field kept as jobs are defined
and preempted, not a count of the task's jobs; the job builder's periodic pass puts a
wrong one right (central services on SecantusDB and the memory bus)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.integration.test_pipeline import drain, loss_of, submit, task_view
from tests.waiting import until

pytestmark = [pytest.mark.mongo]


@pytest.fixture
async def system(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        lease_seconds=30,
        home=tmp_path,
    ) as c:
        yield c


@pytest.fixture
async def http(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
        yield client


async def test_the_count_follows_every_job_defined(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    task_id = (await submit(http, user, maxPoints=5))["id"]
    site = FakeSite(http, "s1", await system.token("ops", ["edge:s1"]))

    async def answer(job: dict[str, Any]) -> None:
        await site.finish(job, loss_of(job))

    async def over() -> bool:
        return (await task_view(http, user, task_id))["status"] in ("done", "failed")

    await drain(site, answer, over)
    jobs = (
        await http.get(f"/api/v1/tasks/{task_id}/jobs", headers={"Authorization": f"Bearer {user}"})
    ).json()
    task = await system.ctx.store.tasks.get(task_id)
    assert task is not None and task.jobs_counted == len(jobs) == 5
    assert (await task_view(http, user, task_id))["progress"]["jobs"] == 5


async def test_a_wrong_count_is_put_right_by_the_periodic_pass(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    task_id = (await submit(http, user, maxPoints=5, nParallelEvaluation=1))["id"]
    store = system.ctx.store

    async def defined() -> int | None:
        task = await store.tasks.get(task_id)
        return task.jobs_counted if task is not None and task.jobs_counted else None

    assert await until(defined) == 1  # no site: one job waits, nothing more is defined
    await store.tasks.set_jobs(task_id, 40)

    async def repaired() -> bool:
        task = await store.tasks.get(task_id)
        return task is not None and task.jobs_counted == 1

    await until(repaired)
    assert await store.jobs.count(task_id, active_only=False) == 1
