"""iDDS steering programs as they really count %NUM_POINTS: ATLAS's hpogrid (installed
with the dev extras, run unchanged) and a stand-in that counts the same way, driving
tasks with minUnevaluatedPoints > 0 through the central services (memory store and
bus), the test acting as the site through the real REST api."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.central import SANDBOX_PYTHON, Central, FakeSite, central, file_artifacts
from tests.integration.test_pipeline import IDDS_PROGRAMS, task_view

SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -1.0, "high": 1.0}},
    "n": {"method": "categorical", "dimension": {"categories": [0, 1, 2]}},
}
SEGMENTS = [{"name": "arms", "files": ["f1"]}, {"name": "legs", "files": ["f2"]}]


@pytest.fixture(params=["sandboxed"])
async def system(
    request: pytest.FixtureRequest, store_url: str, bus_prefix: str, tmp_path: Path
) -> AsyncIterator[Central]:
    """The central services; ``unsandboxed`` runs steering programs with the ``process``
    runtime, as an operator may choose on a trusted host: hpogrid lives in this test's
    virtualenv, whose interpreter the sandbox's unprivileged user may not reach."""
    runtime = {"steering_runtime": "process"} if request.param == "unsandboxed" else {}
    async with central(
        mongo_url=store_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        lease_seconds=30,
        home=tmp_path,
        **runtime,
    ) as c:
        yield c


@pytest.fixture
async def http(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
        yield client


def hpogrid() -> str:
    found = shutil.which("hpogrid", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(
            "hpogrid is not installed next to this Python: install the dev extras "
            "(pip install -e '.[dev]', or run deploy/dev/test.sh)",
            pytrace=False,
        )
    return found


async def run_task(
    system: Central, http: httpx.AsyncClient, config: dict[str, Any], files: dict[str, str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Submit, then answer every job (one at a time) until the task ends."""
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    body = {
        "config": {"evaluationExec": "python eval.py", "nParallelEvaluation": 1, **config},
        "files": {"space.json": json.dumps(SPACE), **files},
    }
    body["config"].setdefault("searchSpaceFile", "space.json")
    reply = await http.post("/api/v1/tasks", json=body, headers={"Authorization": f"Bearer {user}"})
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]
    jobs: list[dict[str, Any]] = []
    while (view := await task_view(http, user, task_id))["status"] not in ("done", "failed"):
        await site.heartbeat(free=1)
        for job in await site.lease(n=1, wait=0.5):
            jobs.append(job)
            p = job["points"][0]["params"]
            await site.finish(job, (p["x"] - 0.3) ** 2 + p["n"])
    return view, jobs


PROGRAMS = {
    "hpogrid_counting.py": (IDDS_PROGRAMS / "hpogrid_counting.py").read_text(),
    "random_search.py": (IDDS_PROGRAMS / "random_search.py").read_text(),
}
COUNTING = (
    f"{SANDBOX_PYTHON} hpogrid_counting.py --n=%NUM_POINTS --max=%MAX_POINTS "
    "--in=$PWD/%IN --out=$PWD/%OUT"
)


async def test_a_program_counting_as_hpogrid_completes_with_min_unevaluated_points(
    system: Central, http: httpx.AsyncClient
) -> None:
    config = {
        "steeringExec": COUNTING,
        "maxPoints": 8,
        "nPointsPerIteration": 3,
        "minUnevaluatedPoints": 2,
    }
    view, jobs = await run_task(system, http, config, PROGRAMS)
    assert view["status"] == "done", view["reason"]
    assert view["progress"]["evaluated"] == 8 and len(jobs) == 8
    assert view["reason"] == "all 8 points evaluated"


@pytest.mark.parametrize("system", ["unsandboxed"], indirect=True)
async def test_hpogrid_itself_drives_a_task_with_min_unevaluated_points(
    system: Central, http: httpx.AsyncClient
) -> None:
    exec_line = (
        f"{hpogrid()} generate -l nevergrad -s space.json -n %NUM_POINTS -m %MAX_POINTS "
        "-i $PWD/%IN -o $PWD/%OUT"
    )
    config = {
        "steeringExec": exec_line,
        "maxPoints": 8,
        "nPointsPerIteration": 3,
        "minUnevaluatedPoints": 2,
    }
    view, jobs = await run_task(system, http, config, {})
    assert view["status"] == "done", view["reason"]
    assert view["progress"]["evaluated"] == 8 and len(jobs) == 8
    assert view["reason"] == "all 8 points evaluated"


async def test_a_segmented_task_counted_per_model_completes(
    system: Central, http: httpx.AsyncClient
) -> None:
    config = {
        "steeringExec": COUNTING,
        "segmentSpecFile": "seg.json",
        "maxPoints": 4,
        "nPointsPerIteration": 3,
        "minUnevaluatedPoints": 2,
    }
    files = {**PROGRAMS, "seg.json": json.dumps(SEGMENTS)}
    view, jobs = await run_task(system, http, config, files)
    assert view["status"] == "done", view["reason"]
    assert [(s["segment"], s["evaluated"]) for s in view["progress"]["segments"]] == [
        ("arms", 4),
        ("legs", 4),
    ]
    assert len(jobs) == 8
