"""Online ask-and-tell through the Hopaas-compatible API, over real HTTP, with the
central services on SecantusDB and each bus (memory and RabbitMQ; asks go to steering
as requests)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.online import STUDY_BUDGET
from services.steering.engine import SteeringEngine
from services.steering.leases import Holding, SegmentLeases
from services.steering.online import OnlineSteering
from shared.bus import NoResponderError
from shared.domain.models import PointStatus
from shared.online import STEERING_TARGET, AskReply, AskRequest
from tests.integration.central import Central, central, file_artifacts

pytestmark = [pytest.mark.mongo]


class BelievesItOwns(SegmentLeases):
    async def hold(self, segment_id: str) -> Holding:
        del segment_id
        return Holding(held=True, continuous=False)


def properties(title: str, **config: Any) -> dict[str, Any]:
    return {
        "x": "optuna#uniform(-3, 3)",
        "n": "optuna#int(0, 4)",
        "opt": "optuna#categorical('adam', 'sgd')",
        "epochs": 5,
        "hopaas_config": {
            "title": title,
            "direction": "minimize",
            "sampler": {"name": "TPESampler", "args": {"seed": 11, "n_startup_trials": 4}},
            "pruner": {"name": "NopPruner", "args": {}},
            **config,
        },
    }


def quadratic(trial: dict[str, Any]) -> float:
    return float((trial["x"] - 1.0) ** 2 + trial["n"] + (trial["opt"] == "sgd"))


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
async def system(
    request: pytest.FixtureRequest,
    mongo_db_url: str,
    bus_prefix: str,
    tmp_path: Path,
    amqp_prefix_cleanup: list[str],
) -> AsyncIterator[Central]:
    bus_url = "memory://" if request.param == "memory" else request.getfixturevalue("amqp_url")
    if bus_url != "memory://":
        amqp_prefix_cleanup.append(bus_url)
    async with central(
        mongo_url=mongo_db_url,
        bus_url=bus_url,
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        await steering_serves(c)
        yield c


async def steering_serves(system: Central) -> None:
    """Wait until a steering process answers asks: the services start after the api,
    and an ask before that is (rightly) refused with 503."""
    probe = AskRequest(task_id="no-such-study", owner="nobody", ask_id="probe")
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = await system.ctx.bus.request(STEERING_TARGET, probe, timeout=5)
        except NoResponderError:
            assert time.monotonic() < deadline, "steering never started serving asks"
            await asyncio.sleep(0.1)
            continue
        assert isinstance(reply, AskReply) and reply.not_found, reply
        return


@pytest.fixture
async def http(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
        yield client


async def ask(http: httpx.AsyncClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await http.post(f"/api/ask/{token}", json=body)
    assert reply.status_code == 200, reply.text
    trial: dict[str, Any] = reply.json()
    return trial


async def test_version(http: httpx.AsyncClient) -> None:
    reply = await http.get("/api/version")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.text


async def test_ask_tell_loop_and_best_trial(system: Central, http: httpx.AsyncClient) -> None:
    token = await system.token("alice", ["user"])
    body = properties("quadratic")
    told: dict[str, float] = {}
    for _ in range(10):
        trial = await ask(http, token, body)
        assert set(trial) == {"x", "n", "opt", "epochs", "hopaas_config", "hopaas_trial"}
        assert -3 <= trial["x"] <= 3
        assert isinstance(trial["n"], int)
        assert 0 <= trial["n"] <= 4
        assert trial["opt"] in ("adam", "sgd")
        assert trial["epochs"] == 5
        loss = quadratic(trial)
        reply = await http.post(
            f"/api/tell/{token}", json={"hopaas_trial": trial["hopaas_trial"], "loss": loss}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["recorded"] is True
        assert reply.json()["status"] == "evaluated"
        told[trial["hopaas_trial"]] = loss
    studies = {key.split(":")[0] for key in told}
    assert len(studies) == 1, "the same title and properties must reuse the study"
    study_id = studies.pop()
    assert sorted(int(key.split(":")[1]) for key in told) == list(range(10))

    best = await http.get(f"/api/get_best_trial/{token}", params={"hopaas_trial": f"{study_id}:0"})
    assert best.status_code == 200, best.text
    assert best.text == min(told, key=lambda key: told[key])

    # a second tell of the same trial changes nothing
    first = next(iter(told))
    again = await http.post(f"/api/tell/{token}", json={"hopaas_trial": first, "loss": -100.0})
    assert again.status_code == 200
    assert again.json()["recorded"] is False
    point = await system.ctx.store.points.get(f"{study_id}.main.{first.split(':')[1]}")
    assert point is not None
    assert point.loss == told[first]
    assert point.status is PointStatus.EVALUATED
    best_again = await http.get(f"/api/get_best_trial/{token}", params={"hopaas_trial": first})
    assert best_again.text == best.text

    # no evaluation job was ever built for the study
    assert await system.ctx.store.jobs.list_for_task(study_id) == []

    # a different title is another study
    other = await ask(http, token, properties("another"))
    assert other["hopaas_trial"].split(":")[0] != study_id


async def test_median_pruner(system: Central, http: httpx.AsyncClient) -> None:
    token = await system.token("carol", ["user"])
    body = properties(
        "pruned",
        pruner={"name": "MedianPruner", "args": {"n_startup_trials": 3, "n_warmup_steps": 2}},
    )
    for _ in range(4):
        trial = await ask(http, token, body)
        for step in range(5):
            reply = await http.post(
                f"/api/should_prune/{token}",
                json={
                    "hopaas_trial": trial["hopaas_trial"],
                    "loss": 1.0 / (step + 1),
                    "step": step,
                },
            )
            assert reply.status_code == 200, reply.text
            assert reply.json() is False
        await http.post(
            f"/api/tell/{token}", json={"hopaas_trial": trial["hopaas_trial"], "loss": 0.2}
        )
    bad = await ask(http, token, body)
    verdicts = []
    for step in range(5):
        reply = await http.post(
            f"/api/should_prune/{token}",
            json={"hopaas_trial": bad["hopaas_trial"], "loss": 50.0, "step": step},
        )
        assert reply.status_code == 200
        assert reply.text in ("true", "false")
        verdicts.append(reply.json())
    assert verdicts[:2] == [False, False], "no pruning during the warm-up steps"
    assert verdicts[2:] == [True, True, True]


async def test_mark_as_failed(system: Central, http: httpx.AsyncClient) -> None:
    token = await system.token("dave", ["user"])
    trial = await ask(http, token, properties("failing"))
    reply = await http.post(
        f"/api/mark_as_failed/{token}",
        json={"hopaas_trial": trial["hopaas_trial"], "error": "out of memory"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "failed"
    told = await http.post(
        f"/api/tell/{token}", json={"hopaas_trial": trial["hopaas_trial"], "loss": 1.0}
    )
    assert told.json() == {
        "hopaas_trial": trial["hopaas_trial"],
        "status": "failed",
        "recorded": False,
    }
    following = await ask(http, token, properties("failing"))
    assert following["hopaas_trial"].endswith(":1")


async def test_isolation_and_auth(system: Central, http: httpx.AsyncClient) -> None:
    alice = await system.token("alice", ["user"])
    mallory = await system.token("mallory", ["user"])
    trial = await ask(http, alice, properties("private"))
    key = trial["hopaas_trial"]
    stolen = await http.post(f"/api/tell/{mallory}", json={"hopaas_trial": key, "loss": 0.0})
    assert stolen.status_code == 404
    peek = await http.get(f"/api/get_best_trial/{mallory}", params={"hopaas_trial": key})
    assert peek.status_code == 404
    prune = await http.post(
        f"/api/should_prune/{mallory}", json={"hopaas_trial": key, "loss": 0.0, "step": 1}
    )
    assert prune.status_code == 404
    # the same properties from another user are another study
    theirs = await ask(http, mallory, properties("private"))
    assert theirs["hopaas_trial"].split(":")[0] != key.split(":")[0]

    unknown = await http.post("/api/ask/hpo_not-a-token", json=properties("private"))
    assert unknown.status_code == 401
    unknown_tell = await http.post("/api/tell/nope", json={"hopaas_trial": key, "loss": 0.0})
    assert unknown_tell.status_code == 401


async def test_bad_suggestion_is_422(system: Central, http: httpx.AsyncClient) -> None:
    token = await system.token("erin", ["user"])
    body = properties("bad")
    body["lr"] = "optuna#uniform(1, 0)"
    reply = await http.post(f"/api/ask/{token}", json=body)
    assert reply.status_code == 422
    assert "lr" in reply.text
    body["lr"] = "optuna#gaussian(0, 1)"
    reply = await http.post(f"/api/ask/{token}", json=body)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "lr"]


def native_worker(url: str, token: str) -> tuple[str, dict[str, Any], list[int]]:
    """A worker on the client SDK (synchronous; run in a thread beside the services)."""
    from client.study import Study

    props = {"x": "optuna#uniform(-3, 3)", "n": "optuna#int(0, 4)", "tag": "sdk"}
    numbers = []
    with Study(
        url, token, "sdk", props, sampler={"name": "RandomSampler", "args": {"seed": 5}}
    ) as study:
        for _ in range(5):
            with study.trial() as trial:
                assert trial.params["tag"] == "sdk"
                assert study.report(trial.number, 0, 1.0) is False
                trial.tell((trial.params["x"] - 1) ** 2 + trial.params["n"])
            numbers.append(trial.number)
        with contextlib.suppress(RuntimeError), study.trial() as failing:
            raise RuntimeError("worker crashed")
        numbers.append(failing.number)
        assert study.tell(0, 123.0) is False
        return study.id, study.best(), numbers


async def test_native_studies_and_sdk(system: Central, http: httpx.AsyncClient) -> None:
    token = await system.token("frank", ["user"])
    study_id, best, numbers = await asyncio.to_thread(native_worker, system.api_url, token)
    assert numbers == list(range(6))
    points = await system.ctx.store.points.list_for_task(study_id)
    assert [p.status for p in points] == [PointStatus.EVALUATED] * 5 + [PointStatus.FAILED]
    assert points[5].last_error == "RuntimeError: worker crashed"
    told = {p.index: p.loss for p in points[:5]}
    assert best == {
        "study_id": study_id,
        "trial": min(told, key=lambda i: told[i]),
        "loss": min(v for v in told.values() if isinstance(v, float)),
    }
    headers = {"Authorization": f"Bearer {await system.token('grace', ['user'])}"}
    assert (await http.get(f"/api/v1/studies/{study_id}", headers=headers)).status_code == 404
    reply = await http.post(
        "/api/v1/studies",
        json={"title": "bad", "properties": {"lr": "optuna#uniform(1)"}},
        headers=headers,
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "properties", "lr"]


async def test_concurrent_asks_and_cancel(system: Central, http: httpx.AsyncClient) -> None:
    token = await system.token("heidi", ["user"])
    body = properties("concurrent")
    trials = await asyncio.gather(*(ask(http, token, body) for _ in range(6)))
    keys = [t["hopaas_trial"] for t in trials]
    study_id = keys[0].split(":")[0]
    assert sorted(int(k.split(":")[1]) for k in keys) == list(range(6))
    assert len({(t["x"], t["n"], t["opt"]) for t in trials}) == 6

    headers = {"Authorization": f"Bearer {token}"}
    view = await http.get(f"/api/v1/tasks/{study_id}", headers=headers)
    assert view.status_code == 200, view.text
    cancel = await http.post(f"/api/v1/tasks/{study_id}/cancel", headers=headers)
    assert cancel.status_code == 200, cancel.text
    refused = await http.post(f"/api/ask/{token}", json=body)
    assert refused.status_code == 409
    assert "cancelled" in refused.text


async def test_racing_handlers_answer_one_ask_with_one_trial(
    system: Central, http: httpx.AsyncClient
) -> None:
    """Steering processes answering the same (retried) ask concurrently create a
    single trial. Each handler here has its own lock and believes it owns the study
    (as after a pause longer than its lease, or clocks that disagree), so only the
    database can decide."""
    token = await system.token("ivan", ["user"])
    first = await ask(http, token, properties("raced"))
    study_id = first["hopaas_trial"].split(":")[0]
    handlers = [
        OnlineSteering(
            system.ctx,
            SteeringEngine(
                system.ctx.store, BelievesItOwns(system.ctx.store.segments, f"p{i}", 30)
            ),
        )
        for i in range(4)
    ]
    request = AskRequest(task_id=study_id, owner="ivan", ask_id="ask_retried")
    replies = await asyncio.gather(*(h.handle(request) for h in handlers))
    assert all(isinstance(r, AskReply) and not r.error for r in replies), replies
    assert {r.point_id for r in replies if isinstance(r, AskReply)} == {f"{study_id}.main.1"}
    points = await system.ctx.store.points.list_for_task(study_id)
    assert [p.index for p in points] == [0, 1]
    again = await handlers[0].handle(request)
    assert isinstance(again, AskReply)
    assert again.point_id == f"{study_id}.main.1"
    # Marked as a retry, the ask is looked up before anything is drawn: no draw, so no
    # rebuild of the optimiser the repeat above threw away.
    rebuilds = handlers[0].engine.rebuilds
    retried = await handlers[0].handle(request.model_copy(update={"retry": True}))
    assert isinstance(retried, AskReply)
    assert retried.point_id == f"{study_id}.main.1"
    assert handlers[0].engine.rebuilds == rebuilds


async def test_sampler_and_pruner_are_part_of_the_study(
    system: Central, http: httpx.AsyncClient
) -> None:
    token = await system.token("judy", ["user"])

    def study_of(**config: Any) -> Any:
        return ask(http, token, properties("keyed", **config))

    base = (await study_of())["hopaas_trial"].split(":")[0]
    assert (await study_of())["hopaas_trial"].split(":")[0] == base
    random = await study_of(sampler={"name": "RandomSampler", "args": {"seed": 1}})
    seeded = await study_of(sampler={"name": "RandomSampler", "args": {"seed": 2}})
    median = await study_of(pruner={"name": "MedianPruner", "args": {}})
    studies = {base, *(t["hopaas_trial"].split(":")[0] for t in (random, seeded, median))}
    assert len(studies) == 4, "another sampler, its args or another pruner is another study"
    # A study's optimiser plans for STUDY_BUDGET evaluations unless the sampler's args
    # say, not for the trial cap (with which NGOpt is 64 optimisers told every result).
    planned = await study_of(sampler={"name": "nevergrad:NGOpt", "args": {"budget": 40}})
    default = await study_of(sampler={"name": "nevergrad:NGOpt", "args": {}})
    budgets = []
    for trial in (planned, default):
        task = await system.ctx.store.tasks.get(trial["hopaas_trial"].split(":")[0])
        assert task is not None
        budgets.append(task.config.steering.budget)
    assert budgets == [40, STUDY_BUDGET]
    assert random["hopaas_trial"].endswith(":0")
