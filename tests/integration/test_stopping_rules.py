"""Stopping rules end a task early, through the central services (SecantusDB, memory
bus), the test acting as the site through the real edge API: the reason is shown by the
api, the monitor and ``hpo status``, and the open jobs are cancelled. The wall-time rule
is checked from stored state by a job builder that was not running when the budget ran
out (a restart), so it is level-triggered, not tied to an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.schemas import TaskSubmission
from services.api.submission import build_task
from services.context import open_context
from services.jobbuilder.app import JobBuilderService
from shared.clock import utcnow
from shared.config import ServiceSettings, load
from shared.domain.models import JobStatus, Point, PointOutcome, TaskStatus
from shared.domain.taskconfig import TaskConfig
from shared.searchspace import canonical_key
from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.integration.test_pipeline import submit, task_view
from tests.integration.test_task_end import shown

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


async def _answer_in_turn(
    site: FakeSite, http: httpx.AsyncClient, token: str, task_id: str, losses: list[float]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Keep two jobs running and finish the older one with the next loss whenever both
    are, until the task ends; its view and the jobs left running."""
    running: list[dict[str, Any]] = []
    while True:
        view = await task_view(http, token, task_id)
        if view["status"] in ("done", "failed", "cancelled"):
            return view, running
        await site.heartbeat(free=2)
        for job in await site.lease(n=2, wait=0.5):
            await site.event(job, "started", host="node1")
            running.append(job)
        if len(running) >= 2 and losses:
            await site.finish(running.pop(0), losses.pop(0))


async def _jobs(http: httpx.AsyncClient, token: str, task_id: str) -> list[dict[str, Any]]:
    reply = await http.get(
        f"/api/v1/tasks/{task_id}/jobs", headers={"Authorization": f"Bearer {token}"}
    )
    jobs: list[dict[str, Any]] = reply.raise_for_status().json()
    return jobs


async def test_target_loss_ends_the_task_done_and_cancels_its_open_jobs(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(
        http, user, maxPoints=20, nPointsPerIteration=20, minUnevaluatedPoints=0, targetLoss=0.1
    )
    view, running = await _answer_in_turn(site, http, user, task["id"], [0.9, 0.5, 0.05, 0.01])
    assert view["status"] == "done", view
    assert view["reason"].startswith("targetLoss 0.1 reached: best loss 0.05 (point "), view
    assert view["reason"].endswith("after 3 evaluated points"), view
    assert running, "a job was still running when the task ended"
    by_id = {j["id"]: j for j in await _jobs(http, user, task["id"])}
    for job in running:
        assert by_id[job["job_id"]]["status"] == "cancelled", by_id[job["job_id"]]
    reply = await site.event(running[0], "heartbeat")
    assert reply["kill"] or not reply["accepted"], reply
    assert "status: done (targetLoss 0.1 reached" in await shown(system, http, user, task["id"])


async def test_no_improvement_ends_a_maximised_task(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(
        http,
        user,
        maxPoints=20,
        nPointsPerIteration=20,
        minUnevaluatedPoints=0,
        stopAfterNoImprovement=2,
        steering={"algorithm": "random", "seed": 3, "directions": ["maximize"]},
    )
    view, _ = await _answer_in_turn(site, http, user, task["id"], [0.5, 0.9, 0.2, 0.8, 0.1])
    assert view["status"] == "done", view
    assert view["reason"].startswith(
        "stopAfterNoImprovement: no better loss in the last 2 evaluated points; best loss 0.9"
    ), view
    assert view["reason"].endswith("after 4 evaluated points"), view


async def test_wall_time_is_found_from_stored_state_after_a_restart(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    settings = load(
        ServiceSettings,
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
        dev_mode=True,
    )
    ctx = await open_context(settings)
    try:
        submission = TaskSubmission(
            config=TaskConfig(
                evaluationExec="true", maxPoints=5, nParallelEvaluation=2, maxWallTime=3600
            ),
            searchSpace={"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        )
        task, segments = build_task(submission, "alice", max_files_bytes=10_000)
        await ctx.store.segments.insert_many(segments)
        await ctx.store.tasks.insert(task)
        await ctx.store.tasks.transition(task.id, TaskStatus.RUNNING)
        for index, x in enumerate([0.25, 0.75]):
            params = {"x": x}
            await ctx.store.points.insert(
                Point(
                    id=f"{task.id}.main.{index}",
                    task_id=task.id,
                    segment="main",
                    index=index,
                    params=params,
                    key=canonical_key(params),
                )
            )
        first = JobBuilderService(ctx)
        await first.build(task.id)
        jobs = await ctx.store.jobs.list_for_task(task.id)
        assert len(jobs) == 2
        expires = utcnow() + timedelta(minutes=5)
        for job in jobs:
            assert await ctx.store.jobs.assign(job.id, "siteA")
        done = await ctx.store.jobs.lease_next("siteA", holder="siteA", expires=expires)
        still = await ctx.store.jobs.lease_next("siteA", holder="siteA", expires=expires)
        assert done is not None and still is not None
        outcome = PointOutcome(point_id=done.point_ids[0], loss=0.3)
        assert await ctx.store.jobs.finish(done.id, done.generation, [outcome])
        finished = await ctx.store.jobs.get(done.id)
        assert finished is not None
        await first.apply(finished)
        await first.build(task.id)
        running = await ctx.store.tasks.get(task.id)
        assert running is not None and running.status is TaskStatus.RUNNING

        # The budget runs out while no job builder runs; nothing happens meanwhile.
        await ctx.store.tasks.col.update_one(
            {"_id": task.id}, {"$set": {"created": utcnow() - timedelta(seconds=3700)}}
        )
        restarted = JobBuilderService(ctx)
        await restarted.reconcile()
        ended = await ctx.store.tasks.get(task.id)
        assert ended is not None and ended.status is TaskStatus.DONE, ended
        assert ended.reason.startswith("maxWallTime (3600 s) reached after 3700 s: best loss 0.3")
        left = await ctx.store.jobs.get(still.id)
        assert left is not None and left.status is JobStatus.CANCELLED
        assert left.reason.startswith("task ended: maxWallTime (3600 s)")
    finally:
        await ctx.close()
