"""The monitor's read API and live stream against the real services (SecantusDB, and the
memory bus or RabbitMQ), with the test playing the site through the edge API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.seed import seed_task
from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.integration.monitor_support import events, monitor_state, upload, wait_until

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(180)]

SPACE = {"x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}}


def submission(points: int, **config: Any) -> dict[str, Any]:
    return {
        "name": "monitored",
        "config": {
            "evaluationExec": "true",
            "maxPoints": points,
            "nParallelEvaluation": 1,
            "nPointsPerIteration": 1,
            "steering": {"algorithm": "random", "seed": 3},
            **config,
        },
        "searchSpace": SPACE,
    }


@pytest.fixture
async def system(mongo_db_url: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix="",
        artifacts_url=file_artifacts(tmp_path),
        monitor_refresh_seconds=0.1,
    ) as running:
        yield running


def user(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_another_users_task_is_unreachable_on_every_endpoint(system: Central) -> None:
    alice, bob = await system.token("alice", ["user"]), await system.token("bob", ["user"])
    task_id = await seed_task(system.ctx.store, "alice", 30, curves=5)
    paths = [
        "",
        "/history",
        "/slices",
        "/parallel",
        "/importance",
        "/intermediate",
        "/points",
        f"/points/{task_id}.main.0",
        "/jobs",
        f"/jobs/{task_id}.main.0.a1/log",
        "/artifacts",
    ]
    async with httpx.AsyncClient(base_url=system.monitor_url, timeout=60) as http:
        for path in paths:
            theirs = await http.get(f"/monitor/api/tasks/{task_id}{path}", headers=user(bob))
            assert theirs.status_code == 404, path
            assert "alice" not in theirs.text
        refused = await http.get(f"/monitor/api/events?task={task_id}", headers=user(bob))
        assert refused.status_code == 404
        listed = await http.get("/monitor/api/tasks", headers=user(bob))
        assert listed.status_code == 200 and listed.json() == []
        own = await http.get(f"/monitor/api/tasks/{task_id}", headers=user(alice))
        assert own.status_code == 200 and own.json()["progress"]["evaluated"] == 30
        anonymous = await http.get(f"/monitor/api/tasks/{task_id}")
        assert anonymous.status_code == 401


async def test_a_task_whose_every_job_failed_is_not_shown_as_a_success(system: Central) -> None:
    token = await system.token("alice", ["user"])
    async with (
        httpx.AsyncClient(base_url=system.api_url, timeout=60) as api,
        httpx.AsyncClient(base_url=system.monitor_url, timeout=60) as mon,
    ):
        site = FakeSite(api, "s1", await system.token("ops", ["edge:s1"]))
        await site.heartbeat(free=1)
        task = (await api.post("/api/v1/tasks", json=submission(2), headers=user(token))).json()
        while True:
            state = (await api.get(f"/api/v1/tasks/{task['id']}", headers=user(token))).json()
            if state["status"] in ("done", "failed"):
                break
            for job in await site.lease(1, wait=0.5):
                await site.event(job, "failed", reason="payload exited 1")
        rows = (await mon.get("/monitor/api/tasks", headers=user(token))).json()
        row = next(r for r in rows if r["id"] == task["id"])
        while row["progress"] is None:  # counted in the background on first sight
            await asyncio.sleep(0.05)
            rows = (await mon.get("/monitor/api/tasks", headers=user(token))).json()
            row = next(r for r in rows if r["id"] == task["id"])
        assert row["health"] == "failed"
        assert row["progress"]["failed"] >= 1 and row["progress"]["evaluated"] == 0
        assert row["status"] == "failed" or "every point failed" in row["note"]


@pytest.mark.rabbitmq
async def test_a_result_arriving_is_pushed_to_the_open_page(
    mongo_db_url: str,
    tmp_path: Path,
    amqp_url: str,
    bus_prefix: str,
    amqp_prefix_cleanup: list[str],
) -> None:
    amqp_prefix_cleanup.append(amqp_url)
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url=amqp_url,
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            monitor_refresh_seconds=0.1,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=60) as api,
        httpx.AsyncClient(base_url=system.monitor_url, timeout=60) as mon,
    ):
        token = await system.token("alice", ["user"])
        site = FakeSite(api, "s1", await system.token("ops", ["edge:s1"]))
        await site.heartbeat(free=1)
        task = (await api.post("/api/v1/tasks", json=submission(3), headers=user(token))).json()
        jobs: list[dict[str, Any]] = []
        while not jobs:
            jobs = await site.lease(1, wait=0.5)
        url = f"/monitor/api/events?task={task['id']}"
        async with mon.stream("GET", url, headers=user(token)) as reply:
            assert reply.status_code == 200
            stream = events(reply)
            kind, hello = await anext(stream)
            assert kind == "hello" and hello["progress"]["evaluated"] == 0
            await site.finish(jobs[0], 0.25)
            while True:
                kind, data = await anext(stream)
                if kind == "changed" and data["progress"]["evaluated"] == 1:
                    break
        history = await mon.get(f"/monitor/api/tasks/{task['id']}/history", headers=user(token))
        assert history.json()["y"] == [0.25]


async def test_a_closed_page_costs_nothing(system: Central) -> None:
    token = await system.token("alice", ["user"])
    task_id = await seed_task(system.ctx.store, "alice", 20)
    hub = monitor_state(system).hub
    async with httpx.AsyncClient(base_url=system.monitor_url, timeout=60) as mon:
        url = f"/monitor/api/events?task={task_id}"
        async with mon.stream("GET", url, headers=user(token)) as reply:
            await anext(events(reply))
            assert hub.counts()[task_id] == 1
            assert task_id in await hub.tick()
    await wait_until(lambda: not hub.subscriptions)
    await wait_until(lambda: hub.idle)
    for _ in range(3):
        assert await hub.tick() == set()


async def test_one_load_serves_every_panel_at_once(system: Central) -> None:
    token = await system.token("alice", ["user"])
    task_id = await seed_task(system.ctx.store, "alice", 3000, curves=10, pruned=3)
    cache = monitor_state(system).cache
    panels = ["", "/history", "/slices", "/parallel", "/intermediate", "/points", "/importance"]
    async with httpx.AsyncClient(base_url=system.monitor_url, timeout=120) as mon:
        replies = await asyncio.gather(
            *(mon.get(f"/monitor/api/tasks/{task_id}{p}", headers=user(token)) for p in panels)
        )
    assert [r.status_code for r in replies] == [200] * len(panels)
    assert cache.loads == 1
    history, slices, parallel = (r.json() for r in replies[1:4])
    assert history["total"] == 3000 and len(history["x"]) <= 2000 + len(history["best_x"])
    assert len(slices["loss"]) == 2000 and len(parallel["loss"]) == 1000
    curves = replies[4].json()
    assert curves["total"] == 10 and curves["pruned"] == 3
    assert set(replies[6].json()["importances"]) == {"lr", "dropout", "layers", "optimizer"}


async def test_points_table_links_each_points_log_and_metrics(system: Central) -> None:
    token = await system.token("alice", ["user"])
    async with (
        httpx.AsyncClient(base_url=system.api_url, timeout=60) as api,
        httpx.AsyncClient(base_url=system.monitor_url, timeout=60) as mon,
    ):
        site = FakeSite(api, "s1", await system.token("ops", ["edge:s1"]))
        await site.heartbeat(free=1)
        task = (await api.post("/api/v1/tasks", json=submission(1), headers=user(token))).json()
        jobs: list[dict[str, Any]] = []
        while not jobs:
            jobs = await site.lease(1, wait=0.5)
        log = b"".join(b"epoch %d loss 0.5\n" % i for i in range(3000))
        await upload(site, jobs[0], "log", log)
        await upload(site, jobs[0], "metrics", b"tarball bytes")
        await site.finish(jobs[0], 0.5)
        base = f"/monitor/api/tasks/{task['id']}"
        page: dict[str, Any] = {"rows": []}
        while not page["rows"] or page["rows"][0]["status"] != "evaluated":
            page = (await mon.get(f"{base}/points", headers=user(token))).json()
        row = page["rows"][0]
        assert row["site"] == "s1" and row["attempts"] == 1
        assert (await api.get(row["log_url"])).content == log
        assert (await api.get(row["metrics_url"])).content == b"tarball bytes"
        tail = (await mon.get(f"{base}/jobs/{row['job_id']}/log", headers=user(token))).json()
        assert (
            tail["truncated"] and tail["size"] == len(log) and log.decode().endswith(tail["text"])
        )
        listed = (await mon.get(f"{base}/artifacts", headers=user(token))).json()["rows"]
        assert {(a["kind"], a["size"]) for a in listed} == {("log", len(log)), ("metrics", 13)}
        assert {a["point_id"] for a in listed} == {row["id"]}
        one = (await mon.get(f"{base}/points/{row['id']}", headers=user(token))).json()
        assert [j["status"] for j in one["jobs"]] == ["finished"] and len(one["artifacts"]) == 2


async def test_a_page_read_without_a_live_stream_is_not_left_stale(system: Central) -> None:
    """A client that reads the JSON without holding an event stream (the CLI, a script,
    a page whose stream dropped) sees each request's current state, not the first one's."""
    token = await system.token("alice", ["user"])
    async with (
        httpx.AsyncClient(base_url=system.api_url, timeout=60) as api,
        httpx.AsyncClient(base_url=system.monitor_url, timeout=60) as mon,
    ):
        site = FakeSite(api, "s1", await system.token("ops", ["edge:s1"]))
        await site.heartbeat(free=1)
        task = (await api.post("/api/v1/tasks", json=submission(1), headers=user(token))).json()
        jobs: list[dict[str, Any]] = []
        while not jobs:
            jobs = await site.lease(1, wait=0.5)
        base = f"/monitor/api/tasks/{task['id']}"
        before = (await mon.get(f"{base}/points", headers=user(token))).json()
        assert [r["status"] for r in before["rows"]] == ["pending"]  # its job is leased
        await site.finish(jobs[0], 0.5)
        points: list[dict[str, Any]] = []
        while not points or points[0]["status"] != "evaluated":  # the api reads the store
            reply = await api.get(f"/api/v1/tasks/{task['id']}/points", headers=user(token))
            points = reply.json()
        assert not monitor_state(system).hub.subscriptions
        after = (await mon.get(f"{base}/points", headers=user(token))).json()
        assert [(r["status"], r["loss"]) for r in after["rows"]] == [("evaluated", 0.5)]
        view = (await mon.get(base, headers=user(token))).json()
        assert view["best_loss"] == 0.5 and view["best_point_id"] == after["rows"][0]["id"]


async def test_bad_table_queries_are_422s_naming_the_parameter(system: Central) -> None:
    token = await system.token("alice", ["user"])
    task_id = await seed_task(system.ctx.store, "alice", 10)
    async with httpx.AsyncClient(base_url=system.monitor_url, timeout=60) as mon:
        base = f"/monitor/api/tasks/{task_id}"
        for query, field in [
            ("filter=lr~3", "filter"),
            ("sort=nosuch", "sort"),
            ("cursor=@@", "cursor"),
        ]:
            reply = await mon.get(f"{base}/points?{query}", headers=user(token))
            assert reply.status_code == 422
            assert reply.json()["detail"][0]["loc"] == ["query", field]
        reply = await mon.get(f"{base}/history?segment=nosuch", headers=user(token))
        assert reply.status_code == 422 and "main" in reply.json()["detail"]


async def test_an_online_study_has_its_page_with_its_title_and_trials(system: Central) -> None:
    token = await system.token("alice", ["user"])
    async with (
        httpx.AsyncClient(base_url=system.api_url, timeout=60) as api,
        httpx.AsyncClient(base_url=system.monitor_url, timeout=60) as mon,
    ):
        body = {"title": "online lr", "properties": {"lr": "optuna#uniform(0, 1)"}}
        study = (await api.post("/api/v1/studies", json=body, headers=user(token))).json()
        for loss in (0.5, 0.25, 0.75):
            trial = (
                await api.post(f"/api/v1/studies/{study['id']}/ask", headers=user(token))
            ).json()
            told = {"trial": trial["trial"], "loss": loss}
            await api.post(f"/api/v1/studies/{study['id']}/tell", json=told, headers=user(token))
        rows = (await mon.get("/monitor/api/tasks?kind=study", headers=user(token))).json()
        assert [r["id"] for r in rows] == [study["id"]]
        base = f"/monitor/api/tasks/{study['id']}"
        detail = (await mon.get(base, headers=user(token))).json()
        assert detail["name"] == "online lr" and detail["online"] and detail["kind"] == "study"
        history = (await mon.get(f"{base}/history", headers=user(token))).json()
        assert history["y"] == [0.5, 0.25, 0.75] and history["best_y"] == [0.5, 0.25, 0.25]
