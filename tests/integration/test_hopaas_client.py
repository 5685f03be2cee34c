"""The Hopaas-compatible API as the public Hopaas client really speaks it: bodies with no
Content-Type, lower-case booleans, bare-word choices, fixed-value studies, its sampler
and pruner arguments, its reading of get_best_trial; over real HTTP, on both buses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import requests

from shared.domain.models import PointStatus
from tests.integration import hopaas_wire as hw
from tests.integration.central import Central
from tests.integration.test_online import http, system  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.mongo]


def readme_study(client: hw.Client, title: str) -> hw.Study:
    """The client's README example, plus one suggestion of every other kind."""
    return hw.Study(
        client,
        title,
        {
            "n_estimators": hw.int_(2, 20),
            "learning_rate": 0.1,
            "max_depth": hw.int_(2, 5),
            "width": hw.int_(1, 1024, log=True),
            "stride": hw.int_(0, 100, step=5),
            "x": hw.uniform(0, 1),
            "y": hw.float_(-10.0, 10.0),
            "z": hw.float_json(-1.0, 1.0, step=0.1),
            "w": hw.float_json(1e-3, 1e3, log=True),
            "d": hw.discrete_uniform(-1.0, 1.0),
            "lr": hw.loguniform(0.1, 100.0),
            "outcome": hw.categorical(["successful", "unsuccessful", "improvable"]),
        },
        special={"node": "gpu-7"},
        pruner=dict(hw.MEDIAN),
    )


def run_readme_loop(server: str, token: str) -> dict[str, Any]:
    client = hw.Client(server, token)
    assert client.version()
    study = readme_study(client, "Iris GBDT v7")
    told: dict[int, float] = {}
    seen: list[dict[str, Any]] = []
    for _ in range(6):
        trial, params, pruned = study.run_trial([0.5, 0.4, 0.3])
        assert not pruned
        told[trial] = 0.3 + trial / 100
        seen.append(params)
    assert study.study_id is not None
    best = client.get_best_trial(study.study_id, 0)
    failing, _ = study.ask()
    client.mark_as_failed(study.study_id, failing, "Computation aborted")
    return {"study": study.study_id, "told": told, "seen": seen, "best": best, "failed": failing}


async def test_the_clients_readme_loop(system: Central) -> None:  # noqa: F811
    token = await system.token("lucio", ["user"])
    out = await asyncio.to_thread(run_readme_loop, system.api_url, token)
    assert sorted(out["told"]) == list(range(6))
    assert out["best"] == 0, "every trial was told 0.3 at the last step"
    for params in out["seen"]:
        assert params["learning_rate"] == 0.1
        assert params["_node"] == "gpu-7"
        assert isinstance(params["n_estimators"], int) and 2 <= params["n_estimators"] <= 20
        assert isinstance(params["width"], int) and 1 <= params["width"] <= 1024
        assert params["stride"] % 5 == 0 and 0 <= params["stride"] <= 100
        assert -1.0 <= params["d"] <= 1.0
        assert round(params["z"] * 10, 6).is_integer()
        assert params["outcome"] in ("successful", "unsuccessful", "improvable")
    points = await system.ctx.store.points.list_for_task(out["study"])
    statuses = [p.status for p in points]
    assert statuses == [PointStatus.EVALUATED] * 6 + [PointStatus.FAILED]
    assert points[out["failed"]].last_error == "Computation aborted"


def run_fixed_study(server: str, token: str) -> tuple[str | None, list[tuple[int, dict[str, Any]]]]:
    study = hw.Study(hw.Client(server, token), "TEST::Study::study", {"some_value": 4242})
    trials = []
    for _ in range(3):
        trial, params, _ = study.run_trial([1.23])
        trials.append((trial, params))
    return study.study_id, trials


async def test_a_study_of_fixed_values_only(system: Central) -> None:  # noqa: F811
    token = await system.token("matteo", ["user"])
    study_id, trials = await asyncio.to_thread(run_fixed_study, system.api_url, token)
    assert [index for index, _ in trials] == [0, 1, 2]
    for _, params in trials:
        assert params["some_value"] == 4242
    assert study_id is not None
    points = await system.ctx.store.points.list_for_task(study_id)
    assert [(p.params, p.status, p.loss) for p in points] == [({}, PointStatus.EVALUATED, 1.23)] * 3


def run_with_pruners(server: str, token: str) -> list[str]:
    client = hw.Client(server, token)
    studies = []
    for pruner in (hw.NOP, hw.HYPERBAND, hw.MEDIAN, hw.THRESHOLD):
        study = hw.Study(
            client, "TEST::Study::one_shot", {"x": 1, "y": hw.int_(0, 10)}, pruner=dict(pruner)
        )
        study.run_trial([1.23])
        assert study.study_id is not None
        studies.append(study.study_id)
    return studies


async def test_every_pruner_the_client_offers(system: Central) -> None:  # noqa: F811
    token = await system.token("ada", ["user"])
    studies = await asyncio.to_thread(run_with_pruners, system.api_url, token)
    assert len(set(studies)) == 4


async def test_bodies_whatever_their_content_type(
    system: Central,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
) -> None:
    token = await system.token("grace", ["user"])
    body = {"x": hw.uniform(0, 1), "hopaas_config": {"title": "typed"}}
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/json"}):
        reply = await http.post(f"/api/ask/{token}", content=json.dumps(body), headers=headers)
        assert reply.status_code == 200, (headers, reply.text)
    bad = await http.post(f"/api/ask/{token}", content=b"x=1&y=2")
    assert bad.status_code == 400
    assert "not JSON" in bad.json()["detail"]
    trailing = await http.post(f"/api/tell/{token}", content=b'{"hopaas_trial": "s:0",}')
    assert trailing.status_code == 400
    assert "trailing comma" in trailing.json()["detail"]


async def test_malformed_and_unbounded_input_is_a_422_naming_the_property(
    system: Central,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
) -> None:
    token = await system.token("eve", ["user"])
    cases = {
        "a": "optuna#uniform(" + "-" * 50_000,
        "b": "optuna#int(0, 1000000000, step=2)",
        "c": "optuna#int(0,1000,1,true)",
        "d": "optuna#categorical(" + ",".join(str(i) for i in range(200_000)) + ")",
    }
    for name, text in cases.items():
        body = {name: text, "hopaas_config": {"title": "bad"}}
        reply = await http.post(f"/api/ask/{token}", content=json.dumps(body))
        assert reply.status_code == 422, (name, reply.text[:300])
        assert reply.json()["detail"][0]["loc"] == ["body", name]
    trial = await http.post(
        f"/api/ask/{token}", content=json.dumps({"x": hw.uniform(0, 1), "hopaas_config": {}})
    )
    key = trial.json()["hopaas_trial"]
    for body, where in (
        ({"hopaas_trial": key, "loss": float("nan")}, "loss"),
        ({"hopaas_trial": key, "loss": float("inf")}, "loss"),
        ({"hopaas_trial": "s:" + "9" * 40, "loss": 1.0}, "hopaas_trial"),
        ({"hopaas_trial": "s:\u0661", "loss": 1.0}, "hopaas_trial"),
    ):
        reply = await http.post(f"/api/tell/{token}", content=json.dumps(body))
        assert reply.status_code == 422, (body, reply.text)
        assert reply.json()["detail"][0]["loc"][-1] == where
    prune = {"hopaas_trial": key, "loss": 1.0, "step": 2**70}
    reply = await http.post(f"/api/should_prune/{token}", content=json.dumps(prune))
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "step"]


async def test_get_best_trial_as_json_for_who_asks_for_json(
    system: Central,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
) -> None:
    token = await system.token("hal", ["user"])
    trial = await http.post(f"/api/ask/{token}", json={"x": hw.uniform(0, 1)})
    key = trial.json()["hopaas_trial"]
    await http.post(f"/api/tell/{token}", json={"hopaas_trial": key, "loss": 0.5})
    query = {"hopaas_trial": key}
    text = await http.get(f"/api/get_best_trial/{token}", params=query)
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text == key
    as_json = await http.get(
        f"/api/get_best_trial/{token}", params=query, headers={"accept": "application/json"}
    )
    assert as_json.json() == key


def test_requests_sends_no_content_type() -> None:
    """What the tests above rely on: requests' data= with a string sets no header."""
    prepared = requests.Request("POST", "http://h/api/ask/t", data=json.dumps({})).prepare()
    assert "Content-Type" not in prepared.headers
