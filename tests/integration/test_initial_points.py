"""Initial points and defaults through the central services (SecantusDB, memory bus,
the real steering service), the test acting as the site through the real edge API: the
initial points (completed by the space's defaults, the defaults' own point first) are
the segment's first points and are evaluated first, for every algorithm, and they
count against maxPoints; points that do not fit the space are a 422 naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.central import SANDBOX_PYTHON, Central, FakeSite, central, file_artifacts
from tests.integration.test_pipeline import IDDS_PROGRAMS, task_view

pytestmark = [pytest.mark.mongo]

SPACE: dict[str, Any] = {
    "x": {"method": "uniform", "dimension": {"low": -2.0, "high": 2.0}, "default": 0.5},
    "n": {"method": "uniformint", "dimension": {"low": 1, "high": 4}},
    "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
}
INITIAL = [{"x": 1.5, "n": 2, "act": "tanh"}, {"n": 3, "act": "relu"}]


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


async def _submit(
    http: httpx.AsyncClient, token: str, space: dict[str, Any], **config: Any
) -> httpx.Response:
    base = {"evaluationExec": "python eval.py", "nParallelEvaluation": 1, **config}
    return await http.post(
        "/api/v1/tasks",
        json={"config": base, "searchSpace": space},
        headers={"Authorization": f"Bearer {token}"},
    )


STEERING = [
    {"algorithm": "tpe", "seed": 1},
    {"algorithm": "random", "seed": 1},
    {"algorithm": "cmaes", "seed": 1},
    {"algorithm": "qmc", "seed": 1},
    {"algorithm": "pbt", "seed": 1, "args": {"population": 3}},
    {"library": "nevergrad", "algorithm": "NGOpt", "seed": 1},
]


@pytest.mark.parametrize("steering", STEERING, ids=lambda s: str(s["algorithm"]))
async def test_initial_points_are_evaluated_first_for_every_algorithm(
    system: Central, http: httpx.AsyncClient, steering: dict[str, Any]
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    reply = await _submit(
        http,
        user,
        SPACE,
        maxPoints=5,
        nPointsPerIteration=2,
        initialPoints=INITIAL,
        steering=steering,
    )
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]
    evaluated: list[dict[str, Any]] = []
    while (await task_view(http, user, task_id))["status"] not in ("done", "failed"):
        await site.heartbeat(free=1)
        for job in await site.lease(n=1, wait=0.5):
            params = job["points"][0]["params"]
            evaluated.append(params)
            await site.event(job, "started", host="node1")
            await site.finish(job, float(params["x"]) ** 2 + params["n"])
    view = await task_view(http, user, task_id)
    assert view["status"] == "done", view
    assert evaluated[:2] == [
        {"x": 1.5, "n": 2, "act": "tanh"},
        {"x": 0.5, "n": 3, "act": "relu"},  # x from its default
    ]
    assert len(evaluated) == 5 and view["progress"]["points"] == 5


async def _evaluate_all(
    site: FakeSite, http: httpx.AsyncClient, token: str, task_id: str
) -> list[dict[str, Any]]:
    evaluated: list[dict[str, Any]] = []
    while (await task_view(http, token, task_id))["status"] not in ("done", "failed"):
        await site.heartbeat(free=1)
        for job in await site.lease(n=1, wait=0.5):
            evaluated.append(job["points"][0]["params"])
            await site.event(job, "started", host="node1")
            await site.finish(job, float(len(evaluated)))
    return evaluated


async def test_the_grid_starts_with_the_initial_point_and_never_repeats_it(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    space = {
        "a": {"method": "categorical", "dimension": {"categories": [1, 2, 3]}},
        "b": {"method": "categorical", "dimension": {"categories": ["u", "v"]}},
    }
    reply = await _submit(
        http,
        user,
        space,
        maxPoints=6,
        initialPoints=[{"a": 3, "b": "v"}],
        steering={"algorithm": "grid"},
    )
    assert reply.status_code == 201, reply.text
    evaluated = await _evaluate_all(site, http, user, reply.json()["id"])
    assert evaluated[0] == {"a": 3, "b": "v"}
    assert sorted((p["a"], p["b"]) for p in evaluated) == [
        (a, b) for a in (1, 2, 3) for b in ("u", "v")
    ]


async def test_the_point_of_the_defaults_comes_first(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    space = {
        "lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1}, "default": 0.01},
        "opt": {
            "method": "categorical",
            "dimension": {"categories": ["sgd", "adam"]},
            "default": "adam",
        },
    }
    reply = await _submit(
        http, user, space, maxPoints=3, initialPoints=[{"lr": 0.5}], steering={"seed": 2}
    )
    assert reply.status_code == 201, reply.text
    evaluated = await _evaluate_all(site, http, user, reply.json()["id"])
    assert evaluated[:2] == [{"lr": 0.01, "opt": "adam"}, {"lr": 0.5, "opt": "adam"}]
    assert len(evaluated) == 3


@pytest.mark.parametrize(
    ("initial", "loc", "text"),
    [
        ([{"x": 9.0, "n": 2, "act": "relu"}], ["initialPoints", 0, "x"], "outside [-2.0, 2.0]"),
        ([{"x": 1.0, "n": 2, "act": "gelu"}], ["initialPoints", 0, "act"], "is not one of"),
        ([{"n": 2, "act": "relu", "y": 1}], ["initialPoints", 0, "y"], "not in the search space"),
        ([{"x": 1.0, "act": "relu"}], ["initialPoints", 0, "n"], "missing"),
        ([{"x": 1.0, "n": 2.5, "act": "relu"}], ["initialPoints", 0, "n"], "expected an integer"),
    ],
)
async def test_an_initial_point_outside_the_space_is_a_422_naming_it(
    system: Central,
    http: httpx.AsyncClient,
    initial: list[dict[str, Any]],
    loc: list[Any],
    text: str,
) -> None:
    user = await system.token("alice", ["user"])
    reply = await _submit(http, user, SPACE, maxPoints=5, initialPoints=initial)
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "config", *loc], error
    assert text in error["msg"], error


async def test_more_initial_points_than_max_points_is_a_422(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    reply = await _submit(http, user, SPACE, maxPoints=1, initialPoints=INITIAL)
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "config", "initialPoints"]
    assert "2 initial points but maxPoints is 1" in error["msg"]


async def test_a_default_outside_its_dimension_is_a_422(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    space = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}, "default": 3}}
    reply = await _submit(http, user, space, maxPoints=2)
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "searchSpace", "x", "default"], error
    assert "3 is outside [0, 1]" in error["msg"]


async def test_a_steering_program_finds_the_initial_points_in_its_input(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    program = (IDDS_PROGRAMS / "random_search.py").read_text()
    exec_line = (
        f"{SANDBOX_PYTHON} random_search.py --n=%NUM_POINTS --max=%MAX_POINTS "
        "--in=$PWD/%IN --out=$PWD/%OUT"
    )
    space = {
        "A": {"type": "Choice", "params": {"choices": [1, 4]}},
        "B": {"type": "Scalar", "bounds": [0, 5]},
    }
    reply = await http.post(
        "/api/v1/tasks",
        json={
            "config": {
                "evaluationExec": "python eval.py",
                "steeringExec": exec_line,
                "maxPoints": 4,
                "nParallelEvaluation": 1,
                "nPointsPerIteration": 2,
                "initialPoints": [{"A": 4, "B": 2.5}],
            },
            "searchSpace": space,
            "files": {"random_search.py": program},
        },
        headers={"Authorization": f"Bearer {user}"},
    )
    assert reply.status_code == 201, reply.text
    evaluated = await _evaluate_all(site, http, user, reply.json()["id"])
    assert evaluated[0] == {"A": 4, "B": 2.5}
    assert len(evaluated) == 4
