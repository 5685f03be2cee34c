"""Metrics through the central services (SecantusDB, memory bus), the test acting as the
site through the real edge API: every metric is stored with its point and shown by the
api and ``hpo points``; a figure of merit and several objectives are computed from them;
a point missing a metric the task needs fails with that reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from client.cli import app
from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.integration.test_pipeline import submit, task_view

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


async def _run(
    site: FakeSite, http: httpx.AsyncClient, token: str, task_id: str, answers: list[Any]
) -> dict[str, Any]:
    """Finish the jobs in turn with ``answers`` (``output.json``'s metrics, or a result
    body) until the task ends; its view."""
    while True:
        view = await task_view(http, token, task_id)
        if view["status"] in ("done", "failed", "cancelled"):
            return view
        await site.heartbeat(free=2)
        for job in await site.lease(n=2, wait=0.5):
            await site.event(job, "started", host="node1")
            result = {"point_id": job["points"][0]["point_id"], **answers.pop(0)}
            await site.event(job, "finished", results=[result])


async def _points(http: httpx.AsyncClient, token: str, task_id: str) -> list[dict[str, Any]]:
    reply = await http.get(
        f"/api/v1/tasks/{task_id}/points", headers={"Authorization": f"Bearer {token}"}
    )
    points: list[dict[str, Any]] = reply.raise_for_status().json()
    return sorted(points, key=lambda p: p["index"])


async def test_a_figure_of_merit_is_computed_and_every_metric_kept(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(
        http,
        user,
        maxPoints=3,
        nPointsPerIteration=3,
        minUnevaluatedPoints=0,
        maxAttempts=1,
        figureOfMerit={"err": 1.0, "seconds": 0.01},
    )
    answers: list[Any] = [
        {"metrics": {"err": 0.3, "seconds": 20, "memory_gb": 3.5}},
        {"loss": 7.0, "metrics": {"err": 0.1, "seconds": 10}},
        {"metrics": {"seconds": 10}},
    ]
    view = await _run(site, http, user, task["id"], answers)
    assert view["status"] == "done", view
    points = await _points(http, user, task["id"])
    assert [p["status"] for p in points] == ["evaluated", "evaluated", "failed"]
    assert points[0]["loss"] == pytest.approx(0.5)
    assert points[0]["metrics"] == {"err": 0.3, "seconds": 20.0, "memory_gb": 3.5}
    assert points[1]["loss"] == pytest.approx(0.2)  # the payload's own loss is not used
    assert points[2]["last_error"] == (
        "figureOfMerit needs metric err, which the evaluation did not report "
        "(metrics reported: seconds)"
    )
    assert view["best"]["loss"] == pytest.approx(0.2)
    assert view["best"]["metrics"] == {"err": 0.1, "seconds": 10.0}

    detail = await http.get(
        f"{system.monitor_url}/monitor/api/tasks/{task['id']}/points/{points[0]['id']}",
        headers={"Authorization": f"Bearer {user}"},
    )
    assert detail.raise_for_status().json()["metrics"] == points[0]["metrics"]

    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["points", task["id"], "--url", system.api_url, "--token", user],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    assert "metrics: err=0.3 seconds=20 memory_gb=3.5" in result.stdout
    assert "figureOfMerit needs metric err" in result.stdout


async def test_metrics_as_objectives_give_a_pareto_front(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(
        http,
        user,
        maxPoints=3,
        nPointsPerIteration=3,
        minUnevaluatedPoints=0,
        objectives=["err", "seconds"],
        steering={"algorithm": "nsga2", "seed": 3},
    )
    answers: list[Any] = [
        {"metrics": {"err": 0.1, "seconds": 30}},
        {"metrics": {"err": 0.3, "seconds": 10}},
        {"metrics": {"err": 0.4, "seconds": 40}},
    ]
    view = await _run(site, http, user, task["id"], answers)
    assert view["status"] == "done", view
    front = sorted(p["loss"] for p in view["pareto_front"])
    assert front == [[0.1, 30.0], [0.3, 10.0]]
