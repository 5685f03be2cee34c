"""Initial points of online studies, over real HTTP with the central services on
SecantusDB and the memory bus: ``hopaas_config.initial_points`` (Hopaas wire) and
``initial_points`` (native ``POST /api/v1/studies``) are the study's first trials, in
order, before its sampler draws; points outside the sampled properties are a 422."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.study import Study
from tests.integration.central import Central, central, file_artifacts
from tests.integration.test_online import ask, properties, quadratic, steering_serves

pytestmark = [pytest.mark.mongo]

INITIAL = [{"x": 1.0, "n": 0, "opt": "adam"}, {"x": -2.5, "n": 4, "opt": "sgd"}]


@pytest.fixture
async def system(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        await steering_serves(c)
        yield c


@pytest.fixture
async def http(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
        yield client


async def _tell(http: httpx.AsyncClient, token: str, trial: dict[str, Any]) -> None:
    reply = await http.post(
        f"/api/tell/{token}", json={"hopaas_trial": trial["hopaas_trial"], "loss": quadratic(trial)}
    )
    assert reply.status_code == 200, reply.text


async def test_hopaas_initial_points_are_the_first_trials(
    system: Central, http: httpx.AsyncClient
) -> None:
    token = await system.token("alice", ["user"])
    body = properties("warm", initial_points=INITIAL)
    trials = []
    for _ in range(4):
        trial = await ask(http, token, body)
        await _tell(http, token, trial)
        trials.append(trial)
    assert [{k: t[k] for k in ("x", "n", "opt")} for t in trials[:2]] == INITIAL
    assert [t["epochs"] for t in trials] == [5] * 4  # fixed properties as sent
    assert [int(t["hopaas_trial"].split(":")[1]) for t in trials] == [0, 1, 2, 3]
    assert {k: trials[2][k] for k in ("x", "n", "opt")} not in INITIAL
    # the same description without initial points finds the same study, which goes on
    again = await ask(http, token, properties("warm"))
    assert again["hopaas_trial"] == trials[0]["hopaas_trial"].split(":")[0] + ":4"


async def test_native_study_initial_points(system: Central, http: httpx.AsyncClient) -> None:
    token = await system.token("bob", ["user"])
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "title": "native-warm",
        "properties": {"lr": "optuna#loguniform(1e-4, 1)", "layers": "optuna#int(1, 3)"},
        "initial_points": [{"lr": 0.01, "layers": 2}],
    }
    reply = await http.post("/api/v1/studies", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    study_id = reply.json()["id"]
    first = await http.post(f"/api/v1/studies/{study_id}/ask", headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["params"] == {"lr": 0.01, "layers": 2}
    second = await http.post(f"/api/v1/studies/{study_id}/ask", headers=headers)
    assert second.status_code == 200, second.text
    assert second.json()["trial"] == 1


@pytest.mark.parametrize(
    ("initial", "loc"),
    [
        ([{"x": 9.0, "n": 0, "opt": "adam"}], ["hopaas_config", "initial_points", "0", "x"]),
        ([{"x": 1.0, "n": 0, "opt": "rmsprop"}], ["hopaas_config", "initial_points", "0", "opt"]),
        ([{"x": 1.0, "n": 0}], ["hopaas_config", "initial_points", "0", "opt"]),
        (
            [{"x": 1.0, "n": 0, "opt": "adam", "epochs": 3}],
            ["hopaas_config", "initial_points", "0", "epochs"],
        ),
        ("not a list", ["hopaas_config", "initial_points"]),
    ],
)
async def test_hopaas_initial_points_outside_the_space_are_a_422(
    system: Central, http: httpx.AsyncClient, initial: Any, loc: list[str]
) -> None:
    token = await system.token("alice", ["user"])
    reply = await http.post(f"/api/ask/{token}", json=properties("bad", initial_points=initial))
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", *loc], error


async def test_native_initial_points_outside_the_space_are_a_422(
    system: Central, http: httpx.AsyncClient
) -> None:
    token = await system.token("bob", ["user"])
    body = {
        "title": "native-bad",
        "properties": {"lr": "optuna#loguniform(1e-4, 1)"},
        "initial_points": [{"lr": 5}],
    }
    reply = await http.post(
        "/api/v1/studies", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "initial_points", "0", "lr"], error
    assert "outside" in error["msg"]


async def test_the_sdk_passes_initial_points(system: Central) -> None:
    token = await system.token("carol", ["user"])

    def work() -> list[dict[str, Any]]:
        study = Study(
            system.api_url,
            token,
            "sdk-warm",
            {"lr": "optuna#loguniform(1e-4, 1)"},
            initial_points=[{"lr": 0.5}, {"lr": 0.001}],
        )
        trials = [study.ask() for _ in range(2)]
        return [t.params for t in trials]

    assert await asyncio.to_thread(work) == [{"lr": 0.5}, {"lr": 0.001}]
