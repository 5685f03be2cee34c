"""How a task ends, and that it always says why: through the central services
(memory store and bus), the test acting as the site through the real REST api, and
read back from the api, the monitor's read API and ``hpo status``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from client.cli import app
from services.api.schemas import TaskSubmission
from services.api.submission import build_task
from services.context import open_context
from services.jobbuilder.app import JobBuilderService
from shared.clock import utcnow
from shared.config import ServiceSettings, load
from shared.domain.models import Point, PointOutcome, TaskStatus
from shared.domain.taskconfig import TaskConfig
from shared.searchspace import canonical_key
from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.integration.test_pipeline import submit, task_view


@pytest.fixture
async def system(store_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=store_url,
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


async def run_until_over(
    site: FakeSite, http: httpx.AsyncClient, token: str, task_id: str, behaviour: Any
) -> dict[str, Any]:
    """Answer every job with ``behaviour`` until the task is terminal; its view."""
    while True:
        view = await task_view(http, token, task_id)
        if view["status"] in ("done", "failed", "cancelled"):
            return view
        await site.heartbeat(free=2)
        for job in await site.lease(n=2, wait=0.5):
            await site.event(job, "started", host="node1")
            await behaviour(job)


async def shown(system: Central, http: httpx.AsyncClient, token: str, task_id: str) -> str:
    """What ``hpo status`` prints, and a check that the monitor's data agrees."""
    reply = await http.get(
        f"{system.monitor_url}/monitor/api/tasks", headers={"Authorization": f"Bearer {token}"}
    )
    mine = {t["id"]: t for t in reply.raise_for_status().json()}[task_id]
    view = await task_view(http, token, task_id)
    assert (mine["status"], mine["reason"]) == (view["status"], view["reason"])
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["status", task_id, "--url", system.api_url, "--token", token],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    return result.stdout


async def test_a_budget_below_what_retries_need_ends_failed_not_done(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(
        http,
        user,
        maxPoints=2,
        nParallelEvaluation=1,
        nPointsPerIteration=2,
        minUnevaluatedPoints=0,
        maxEvaluationJobs=3,
    )
    failed_once: set[str] = set()

    async def first_attempts_fail(job: dict[str, Any]) -> None:
        point = job["points"][0]["point_id"]
        if point not in failed_once:
            failed_once.add(point)
            await site.event(job, "failed", reason="CUDA out of memory")
        else:
            await site.finish(job, 0.5)

    view = await run_until_over(site, http, user, task["id"], first_attempts_fail)
    assert view["status"] == "failed", view
    assert view["reason"].startswith(
        "maxEvaluationJobs (3) reached with 1 of 2 points never evaluated (1 evaluated, 0 failed"
    ), view["reason"]
    assert "raise maxEvaluationJobs" in view["reason"]
    assert "last error: CUDA out of memory" in view["reason"]
    assert view["progress"]["evaluated"] == 1 and view["progress"]["unevaluated"] == 1
    out = await shown(system, http, user, task["id"])
    assert "status: failed (maxEvaluationJobs (3) reached with 1 of 2 points" in out


async def test_a_task_whose_every_job_failed_ends_failed(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(
        http,
        user,
        maxPoints=2,
        nParallelEvaluation=2,
        nPointsPerIteration=2,
        minUnevaluatedPoints=0,
    )

    async def every_job_fails(job: dict[str, Any]) -> None:
        await site.event(job, "failed", reason="payload exited with code 3")

    view = await run_until_over(site, http, user, task["id"], every_job_fails)
    assert view["status"] == "failed", view
    assert view["reason"] == (
        "every evaluation failed: none of 4 jobs gave a loss; maxEvaluationJobs (4) reached; "
        "last error: payload exited with code 3"
    )
    out = await shown(system, http, user, task["id"])
    assert "status: failed (every evaluation failed" in out


async def test_a_finished_search_ends_done_and_says_so(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(http, user, maxPoints=3, nParallelEvaluation=2, maxAttempts=1)
    answered: list[str] = []

    async def one_fails(job: dict[str, Any]) -> None:
        answered.append(job["job_id"])
        if len(answered) == 1:
            await site.event(job, "failed", reason="segfault")
        else:
            await site.finish(job, 1.0)

    view = await run_until_over(site, http, user, task["id"], one_fails)
    assert view["status"] == "done", view
    assert view["reason"] == "3 points: 2 evaluated, 1 failed after 1 attempt"
    assert "status: done (3 points: 2 evaluated, 1 failed" in await shown(
        system, http, user, task["id"]
    )


async def test_a_task_does_not_end_before_its_last_outcome_is_on_its_point(
    store_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    """The last job has finished but the job builder has not applied it yet (it runs
    apart from the end check): the points still show it pending, so an end decided now
    would say a point was never evaluated. Driven step by step, no services running."""
    settings = load(
        ServiceSettings,
        mongo_url=store_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
        dev_mode=True,
    )
    ctx = await open_context(settings)
    try:
        submission = TaskSubmission(
            config=TaskConfig(evaluationExec="true", maxPoints=1, maxEvaluationJobs=1),
            searchSpace={"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        )
        task, segments = build_task(submission, "alice", max_files_bytes=10_000)
        await ctx.store.segments.insert_many(segments)
        await ctx.store.tasks.insert(task)
        await ctx.store.tasks.transition(task.id, TaskStatus.RUNNING)
        point = Point(
            id=f"{task.id}.main.0",
            task_id=task.id,
            segment="main",
            index=0,
            params={"x": 0.5},
            key=canonical_key({"x": 0.5}),
        )
        await ctx.store.points.insert(point)
        await ctx.store.segments.mark_exhausted(segments[0].id)
        builder = JobBuilderService(ctx)
        await builder.build(task.id)  # defines the only job the budget allows
        [job] = await ctx.store.jobs.list_for_task(task.id)
        assert await ctx.store.jobs.assign(job.id, "siteA")
        expires = utcnow() + timedelta(minutes=5)
        leased = await ctx.store.jobs.lease_next("siteA", holder="siteA", expires=expires)
        assert leased is not None and leased.id == job.id
        result = PointOutcome(point_id=point.id, loss=0.25)
        assert await ctx.store.jobs.finish(job.id, leased.generation, [result])

        await builder.build(task.id)  # the outcome is not applied yet: no end now
        pending = await ctx.store.tasks.get(task.id)
        assert pending is not None and pending.status is TaskStatus.FINISHING, pending

        finished = await ctx.store.jobs.get(job.id)
        assert finished is not None
        await builder.apply(finished)
        await builder.build(task.id)
        ended = await ctx.store.tasks.get(task.id)
        assert ended is not None
        assert (ended.status, ended.reason) == (TaskStatus.DONE, "all 1 points evaluated")
    finally:
        await ctx.close()
