"""Bad input from a valid user or site is a 4xx naming the field (or, for a site's
result, the point's failure with the reason), never a 500, and leaves no record behind:
through the real api over HTTP, on the memory store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.domain.models import PointStatus
from shared.store.memory import MemoryStore
from tests.integration.central import Central, FakeSite, central, file_artifacts

SPACE = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}
HUGE = 2**70


def stored(system: Central, repository: str) -> int:
    """Records in one of the (memory) store's tables: nothing half-stored is left."""
    store = system.ctx.store
    assert isinstance(store, MemoryStore)
    return len(getattr(store, repository).table)


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


@pytest.fixture
async def user(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    token = await system.token("alice", ["user"])
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=system.api_url, headers=headers, timeout=60) as c:
        yield c


def submission(config: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "config": {"evaluationExec": "python train.py", **(config or {})},
        "searchSpace": SPACE,
        **extra,
    }


async def post(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    """As JSON, NaN and Infinity included (Python's json writes them; so do some users)."""
    return await http.post(
        "/api/v1/tasks", content=json.dumps(body), headers={"content-type": "application/json"}
    )


def locs(reply: httpx.Response) -> list[list[Any]]:
    return [e["loc"] for e in reply.json()["detail"]]


@pytest.mark.parametrize(
    ("config", "loc"),
    [
        ({"maxEvaluationJobs": HUGE}, ["body", "config", "maxEvaluationJobs"]),
        ({"checkPointInterval": HUGE}, ["body", "config", "checkPointInterval"]),
        ({"steering": {"seed": HUGE}}, ["body", "config", "steering", "seed"]),
        ({"steering": {"budget": HUGE}}, ["body", "config", "steering", "budget"]),
        (
            {"steering": {"args": {"n_startup_trials": HUGE}}},
            ["body", "config", "steering", "args"],
        ),
        ({"pruner": {"name": "median", "args": {"n_warmup_steps": HUGE}}}, None),
        ({"minUnevaluatedPoints": HUGE}, ["body", "config", "minUnevaluatedPoints"]),
        ({"failedPointLoss": float("nan")}, ["body", "config", "failedPointLoss"]),
        ({"failedPointLoss": float("inf")}, ["body", "config", "failedPointLoss"]),
        ({"evaluationOutput": "out\0put.json"}, ["body", "config", "evaluationOutput"]),
        ({"evaluationExec": "python\0 train.py"}, ["body", "config", "evaluationExec"]),
        ({"trainingDS": "user.x\0"}, ["body", "config", "trainingDS"]),
    ],
)
async def test_unstorable_options_are_422_naming_them(
    system: Central, user: httpx.AsyncClient, config: dict[str, Any], loc: list[Any] | None
) -> None:
    reply = await post(user, submission(config))
    assert reply.status_code == 422, reply.text
    if loc is not None:
        assert loc in locs(reply), reply.text
    else:
        assert locs(reply)[0][:3] == ["body", "config", "pruner"], reply.text
    assert stored(system, "segments") == stored(system, "tasks") == 0


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (submission(files={"in\0put.json": "{}"}), ["body", "files", "in\0put.json"]),
        (
            submission(searchSpace={"x\0": SPACE["x"]}),
            ["body", "searchSpace", "x\0"],
        ),
        (
            submission(
                searchSpace={"x": {"method": "uniformint", "dimension": {"low": 0, "high": HUGE}}}
            ),
            ["body", "searchSpace", "x", "dimension", "high"],
        ),
        (
            submission(
                searchSpace={"x": {"method": "categorical", "dimension": {"categories": [HUGE]}}}
            ),
            ["body", "searchSpace", "x", "dimension", "categories", 0],
        ),
        (
            submission(
                searchSpace={
                    "x": {
                        "method": "categorical",
                        "dimension": {"categories": list(range(20_000))},
                    }
                }
            ),
            ["body", "searchSpace", "x", "dimension", "categories"],
        ),
    ],
)
async def test_bad_files_and_spaces_are_422_naming_them(
    system: Central, user: httpx.AsyncClient, body: dict[str, Any], loc: list[Any]
) -> None:
    reply = await post(user, body)
    assert reply.status_code == 422, reply.text[:500]
    assert loc in locs(reply), reply.text[:500]
    assert stored(system, "segments") == 0


async def test_a_trailing_comma_in_a_submitted_file_says_so(user: httpx.AsyncClient) -> None:
    text = '{\n  "x": {"method": "uniform",\n         "dimension": {"low": 0, "high": 1}},\n}\n'
    body = submission({"searchSpaceFile": "space.json"}, files={"space.json": text})
    del body["searchSpace"]
    reply = await post(user, body)
    assert reply.status_code == 422
    detail = reply.json()["detail"][0]
    assert detail["loc"] == ["body", "files", "space.json"]
    assert "a trailing comma after the last entry on line 3?" in detail["msg"]


async def test_the_panda_example_with_a_repeated_category_runs(
    system: Central, user: httpx.AsyncClient
) -> None:
    space = {
        "cnn_block_depths_1": {"method": "categorical", "dimension": {"categories": [1, 1, 2]}},
        "lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}},
    }
    reply = await post(user, submission({"maxPoints": 4}, searchSpace=space))
    assert reply.status_code == 201, reply.text
    segments = await system.ctx.store.segments.list_for_task(reply.json()["id"])
    stored = segments[0].search_space["cnn_block_depths_1"]["dimension"]["categories"]
    assert stored == [1, 1, 2], "what the user wrote is what a steering program gets"


async def test_an_oversized_body_is_413(user: httpx.AsyncClient) -> None:
    big = submission(files={"blob.json": "x" * 9_000_000})
    reply = await post(user, big)
    assert reply.status_code == 413


@pytest.fixture
async def edge(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=60) as c:
        yield c


async def site_with_a_job(
    system: Central, user: httpx.AsyncClient, edge: httpx.AsyncClient
) -> tuple[FakeSite, Any, str]:
    reply = await post(user, submission({"maxPoints": 1}))
    assert reply.status_code == 201, reply.text
    site = FakeSite(edge, "site-a", await system.token("ops", ["edge:site-a"]))
    await site.heartbeat(1)
    jobs: list[dict[str, Any]] = []
    while not jobs:
        jobs = await site.lease(1, wait=2.0)
    return site, jobs[0], reply.json()["id"]


async def test_a_site_cannot_send_unbounded_numbers(
    system: Central, user: httpx.AsyncClient, edge: httpx.AsyncClient
) -> None:
    site, job, _ = await site_with_a_job(system, user, edge)
    headers = site.headers
    cases: list[tuple[str, dict[str, Any], list[Any]]] = [
        ("/edge/v1/sites/site-a/heartbeat", {"free_slots": HUGE}, ["body", "free_slots"]),
        (
            f"/edge/v1/jobs/{job['job_id']}/artifacts/confirm",
            {
                "generation": job["generation"],
                "kind": "log",
                "key": "k",
                "size": HUGE,
                "sha256": "0" * 64,
            },
            ["body", "size"],
        ),
        (
            f"/edge/v1/jobs/{job['job_id']}/checkpoints",
            {"generation": job["generation"], "seq": HUGE, "size": 1, "sha256": "0" * 64},
            ["body", "seq"],
        ),
        (
            f"/edge/v1/jobs/{job['job_id']}/events",
            {"kind": "heartbeat", "generation": HUGE},
            ["body", "generation"],
        ),
        (
            f"/edge/v1/jobs/{job['job_id']}/intermediate",
            {"generation": job["generation"], "values": [{"step": 1, "value": float("nan")}]},
            ["body", "values", 0, "value"],
        ),
        (
            f"/edge/v1/jobs/{job['job_id']}/events",
            {
                "kind": "finished",
                "generation": job["generation"],
                "results": [{"point_id": job["points"][0]["point_id"], "loss": float("inf")}],
            },
            ["body", "results", 0, "loss"],
        ),
    ]
    for path, body, loc in cases:
        reply = await site.http.post(
            path,
            content=json.dumps(body),
            headers={**headers, "content-type": "application/json"},
        )
        assert reply.status_code == 422, (path, reply.text)
        assert any(e["loc"][: len(loc)] == loc for e in reply.json()["detail"]), reply.text


async def test_a_list_loss_for_a_single_objective_task_fails_the_point_with_the_reason(
    system: Central, user: httpx.AsyncClient, edge: httpx.AsyncClient
) -> None:
    site, job, task_id = await site_with_a_job(system, user, edge)
    point_id = job["points"][0]["point_id"]
    reply = await site.event(job, "finished", results=[{"point_id": point_id, "loss": [0.1, 0.2]}])
    assert reply["accepted"] is True
    stored = await system.ctx.store.jobs.get(job["job_id"])
    assert stored is not None
    assert stored.results[0].loss is None
    assert "the task has 1 objective" in stored.results[0].message
    point = await system.ctx.store.points.get(point_id)
    assert point is not None
    assert point.status is not PointStatus.EVALUATED
    task = await system.ctx.store.tasks.get(task_id)
    assert task is not None and task.best_loss is None
