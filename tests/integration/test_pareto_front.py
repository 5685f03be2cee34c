"""Multi-objective tasks: the read API and ``hpo status`` show the Pareto front
(memory store and bus, the test acting as the edge site)."""

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
from tests.integration.test_pipeline import SPACE, drain, task_view

LOSSES = {
    0: [1.0, 5.0],
    1: [2.0, 3.0],  # dominated by 5: same first objective, smaller second
    2: [3.0, 3.0],
    3: [4.0, 1.0],
    4: [5.0, 5.0],
    5: [2.0, 6.0],
}
"""Point index -> loss; minimising the first and maximising the second objective,
the front is points 0 and 5."""


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


async def test_a_multi_objective_task_reports_its_pareto_front(system: Central) -> None:
    user = await system.token("alice", ["user"])
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
        config = {
            "evaluationExec": "python eval.py",
            "maxPoints": 6,
            "nParallelEvaluation": 3,
            "nPointsPerIteration": 3,
            "steering": {"algorithm": "random", "seed": 4, "directions": ["minimize", "maximize"]},
        }
        reply = await http.post(
            "/api/v1/tasks",
            json={"config": config, "searchSpace": SPACE},
            headers={"Authorization": f"Bearer {user}"},
        )
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["id"]

        async def answer(job: dict[str, Any]) -> None:
            point = job["points"][0]
            await site.event(
                job,
                "finished",
                results=[{"point_id": point["point_id"], "loss": LOSSES[point["index"]]}],
            )

        async def over() -> bool:
            return (await task_view(http, user, task_id))["status"] in ("done", "failed")

        await drain(site, answer, over)
        view = await task_view(http, user, task_id)
    assert view["status"] == "done", view["reason"]
    assert view["best"] is None, "a multi-objective task has no single best point"
    front = {p["point_id"]: p["loss"] for p in view["pareto_front"]}
    assert front == {f"{task_id}.main.0": LOSSES[0], f"{task_id}.main.5": LOSSES[5]}
    params = {p.id: p.params for p in await system.ctx.store.points.list_for_task(task_id)}
    assert all(p["params"] == params[p["point_id"]] for p in view["pareto_front"])

    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["status", task_id, "--url", system.api_url, "--token", user],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "Pareto front (2 points)" in result.output
    assert f"[1, 5] at {params[f'{task_id}.main.0']}" in result.output
