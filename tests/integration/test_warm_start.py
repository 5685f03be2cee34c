"""Warm start through the real api and steering on the memory store: a task names an earlier
task of its owner in ``warmStartFrom``; the earlier points that fit are told to its
optimiser (shown in the task view, not counted as its points), the others are counted
by reason, and another user's task is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.schemas import TaskSubmission
from services.api.submission import build_task
from shared.domain.models import Point, PointStatus
from shared.searchspace import canonical_key
from tests.integration.central import Central, central, file_artifacts
from tests.waiting import until

OLD_SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 2}}}
NEW_SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}


@pytest.fixture
async def system(store_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=store_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        yield c


async def earlier_task(system: Central, owner: str) -> str:
    """A finished task of ``owner`` whose points are stored as its evaluations left them."""
    sub = TaskSubmission.model_validate(
        {"config": {"evaluationExec": "true"}, "searchSpace": OLD_SPACE}
    )
    task, segments = build_task(sub, owner, max_files_bytes=10_000)
    # online: no steering process tops it up while the test runs
    task = task.model_copy(update={"config": task.config.model_copy(update={"online": True})})
    await system.ctx.store.segments.insert_many(segments)
    await system.ctx.store.tasks.insert(task)
    for index, (x, status) in enumerate(
        [
            (0.25, PointStatus.EVALUATED),
            (0.75, PointStatus.EVALUATED),
            (1.5, PointStatus.EVALUATED),  # outside the new task's bounds
            (0.5, PointStatus.UNEVALUATED),  # never evaluated
        ]
    ):
        params = {"x": x}
        await system.ctx.store.points.insert(
            Point(
                id=f"{task.id}.{index}",
                task_id=task.id,
                segment="main",
                index=index,
                params=params,
                key=canonical_key(params),
                status=status,
                loss=x if status is PointStatus.EVALUATED else None,
            )
        )
    return task.id


async def client(system: Central, owner: str) -> httpx.AsyncClient:
    token = await system.token(owner, ["user"])
    return httpx.AsyncClient(
        base_url=system.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def submission(**config: Any) -> dict[str, Any]:
    return {
        "config": {"evaluationExec": "python train.py", "maxPoints": 3, **config},
        "searchSpace": NEW_SPACE,
    }


async def test_fitting_points_are_told_and_shown_and_not_counted(system: Central) -> None:
    old = await earlier_task(system, "alice")
    async with await client(system, "alice") as http:
        reply = await http.post("/api/v1/tasks", json=submission(warmStartFrom=[old]))
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["id"]

        async def warm() -> dict[str, Any] | None:
            view = (await http.get(f"/api/v1/tasks/{task_id}")).json()
            return view if view["warm_start"] and view["warm_start"]["told"] else None

        view = await until(warm)
        assert view["warm_start"] == {
            "told": 2,
            "skipped": {"values outside the new space": 1, "not evaluated": 1},
        }
        points = await system.ctx.store.points.list_for_task(task_id)
        assert len(points) <= 3  # its own maxPoints, untouched by the two told
        assert all(0 <= p.params["x"] <= 1 for p in points)


async def test_another_users_task_is_refused_naming_the_entry(system: Central) -> None:
    old = await earlier_task(system, "alice")
    async with await client(system, "bob") as http:
        reply = await http.post(
            "/api/v1/tasks", json=submission(warmStartFrom=["task_nonexistent", old])
        )
    assert reply.status_code == 422, reply.text
    assert [e["loc"] for e in reply.json()["detail"]] == [
        ["body", "config", "warmStartFrom", 0],
        ["body", "config", "warmStartFrom", 1],
    ]
    assert await system.ctx.store.tasks.list_for_owner("bob") == []
