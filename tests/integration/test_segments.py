"""Segmented tasks through the central services (memory store and bus), the test
acting as the edge site through the real REST api."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.searchspace import parse_search_space, validate_point
from tests.integration.central import SANDBOX_PYTHON, Central, FakeSite, central, file_artifacts
from tests.integration.test_pipeline import IDDS_PROGRAMS, drain, task_view

SEGMENTS = [
    {"name": "arms", "files": ["file_1", "file_3"]},
    {"name": "legs", "files": ["file_2"]},
]
SPACES = [
    {"x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}},
    {"k": {"method": "categorical", "dimension": {"categories": [10, 20, 30, 40]}}},
]


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


async def submit(
    http: httpx.AsyncClient, token: str, config: dict[str, Any], files: dict[str, str]
) -> httpx.Response:
    body = {
        "config": {
            "evaluationExec": "python toy.py %SEGMENT_NAME --data=%IN_DATA",
            "evaluationMetrics": "metrics.tgz",
            "segmentSpecFile": "seg.json",
            "searchSpaceFile": "space.json",
            "maxPoints": 3,
            "nParallelEvaluation": 4,
            "nPointsPerIteration": 2,
            **config,
        },
        "files": {"seg.json": json.dumps(SEGMENTS), "space.json": json.dumps(SPACES), **files},
    }
    return await http.post("/api/v1/tasks", json=body, headers={"Authorization": f"Bearer {token}"})


def loss_of(job: dict[str, Any]) -> float:
    params = job["points"][0]["params"]
    return float(params["x"]) if job["segment"] == "arms" else params["k"] / 100


async def run_to_end(
    system: Central, http: httpx.AsyncClient, token: str, task_id: str
) -> list[dict[str, Any]]:
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))

    async def answer(job: dict[str, Any]) -> None:
        await site.finish(job, loss_of(job))

    async def over() -> bool:
        return (await task_view(http, token, task_id))["status"] in ("done", "failed")

    return await drain(site, answer, over)


async def test_two_segments_are_optimised_independently(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    reply = await submit(http, user, {"steering": {"algorithm": "random", "seed": 2}}, {})
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))

    jobs = await run_to_end(system, http, user, task_id)
    view = await task_view(http, user, task_id)
    assert view["status"] == "done", view["reason"]
    assert Counter(j["segment"] for j in jobs) == {"arms": 3, "legs": 3}, "maxPoints per segment"

    spaces = dict(zip(("arms", "legs"), map(parse_search_space, SPACES), strict=True))
    files = {s["name"]: s["files"] for s in SEGMENTS}
    for job in jobs:
        segment = job["segment"]
        assert job["segmented"] is True
        assert job["training_files"] == files[segment]
        assert validate_point(spaces[segment], job["points"][0]["params"]) == []
        assert job["points"][0]["point_id"].startswith(f"{task_id}.{segment}.")
    points = await system.ctx.store.points.list_for_task(task_id)
    assert Counter(p.segment for p in points) == {"arms": 3, "legs": 3}
    assert sorted(p.index for p in points if p.segment == "legs") == [0, 1, 2]

    # the metrics tarball keeps phpo's name, with the segment prefix
    job = jobs[-1]
    urls = await http.post(
        f"/edge/v1/jobs/{job['job_id']}/artifacts",
        json={"generation": job["generation"], "kinds": ["metrics"]},
        headers=site.headers,
    )
    assert urls.status_code == 200, urls.text
    index = job["points"][0]["index"]
    key = urls.json()["uploads"][0]["key"]
    assert key == f"alice/{task_id}/{job['segment']}.{task_id}.{index}.metrics.tgz"


async def test_segment_errors_are_422s_naming_the_key(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    reply = await submit(http, user, {}, {"seg.json": json.dumps([{"name": "arms"}])})
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "files", "seg.json", 0]
    reply = await submit(http, user, {}, {"space.json": json.dumps(SPACES * 2)})
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "files", "space.json"]
    assert "4 search spaces for 2 segments" in reply.json()["detail"][0]["msg"]


async def test_a_segmented_idds_steering_program_drives_a_task(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    exec_line = (
        f"{SANDBOX_PYTHON} segmented_random.py --n=%NUM_POINTS --max=%MAX_POINTS "
        "--in=$PWD/%IN --out=$PWD/%OUT"
    )
    programs = {
        name: (IDDS_PROGRAMS / name).read_text()
        for name in ("segmented_random.py", "random_search.py")
    }
    reply = await submit(http, user, {"steeringExec": exec_line}, programs)
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]

    jobs = await run_to_end(system, http, user, task_id)
    view = await task_view(http, user, task_id)
    assert view["status"] == "done", view["reason"]
    assert Counter(j["segment"] for j in jobs) == {"arms": 3, "legs": 3}
    points = await system.ctx.store.points.list_for_task(task_id)
    assert {p.segment: set(p.params) for p in points} == {"arms": {"x"}, "legs": {"k"}}
