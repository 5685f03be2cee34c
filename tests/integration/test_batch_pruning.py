"""Pruning batch points: the payload's learning curve goes through the harvester to the
api, the task's pruner stops a bad point, the site kills its payload, and the point
counts as evaluated with the value it last reported."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import Central, FakeSite, central, file_artifacts

# The point x == 2 reports a bad curve (50, 51, 52, ...) and would then run for minutes;
# the others report a falling curve and finish with loss 0.25.
PAYLOAD = """\
import json, time
x = json.load(open("input.json"))["x"]
bad = x == 2
with open("intermediate.jsonl", "a") as curve:
    for step in range(4):
        value = 50.0 + step if bad else 1.0 / (step + 1)
        curve.write(json.dumps({"step": step, "value": value}) + "\\n")
        curve.flush()
        time.sleep(0.3)
if bad:
    time.sleep(300)
json.dump({"status": 0, "loss": 0.25}, open("output.json", "w"))
"""
THRESHOLD = {"name": "threshold", "args": {"upper": 10.0, "n_warmup_steps": 2}}


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    while not await predicate():  # waiting for ``what``; the test's timeout bounds it
        await asyncio.sleep(0.2)


@pytest.fixture
async def system(store_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=store_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as running:
        yield running


async def submit(
    http: httpx.AsyncClient, headers: dict[str, str], config: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "config": config,
        "searchSpace": {"x": {"method": "categorical", "dimension": {"categories": [0, 1, 2]}}},
    }
    reply = await http.post("/api/v1/tasks", json=body, headers=headers)
    assert reply.status_code in (200, 201), reply.text
    task: dict[str, Any] = reply.json()
    return task


async def test_bad_curve_is_pruned_and_killed(system: Central, tmp_path: Path) -> None:
    script = tmp_path / "payload.py"
    script.write_text(PAYLOAD)
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        task = await submit(
            http,
            headers,
            {
                "evaluationExec": f"{sys.executable} {script}",
                "maxPoints": 3,
                "nPointsPerIteration": 3,
                "nParallelEvaluation": 3,
                "steering": {"algorithm": "grid"},
                "pruner": THRESHOLD,
            },
        )
        site = SiteConfig.model_validate(
            {
                "site": "s1",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:s1"]),
                "root": tmp_path / "edge",
                "slots": 3,
                "poll_interval": 0.2,
                "heartbeat_interval": 0.5,
                "lease_wait_seconds": 0.5,
                "kill_grace_seconds": 2,
            }
        )
        stop = asyncio.Event()
        harvester = asyncio.create_task(Harvester(site).run(stop))
        url = f"/api/v1/tasks/{task['id']}"

        async def done() -> bool:
            return (await http.get(url, headers=headers)).json()["status"] == "done"

        try:
            await wait_for(done, "the task did not complete")
        finally:
            stop.set()
            await harvester
        points = (await http.get(f"{url}/points", headers=headers)).json()
        jobs = (await http.get(f"{url}/jobs", headers=headers)).json()

    by_x = {p["params"]["x"]: p for p in points}
    assert sorted(by_x) == [0, 1, 2]
    bad = by_x[2]
    assert (bad["status"], bad["loss"], bad["pruned_step"]) == ("evaluated", 52.0, 2)
    assert bad["attempts"] == 1, "a pruned point is not retried"
    for x in (0, 1):
        assert (by_x[x]["status"], by_x[x]["loss"], by_x[x]["pruned_step"]) == (
            "evaluated",
            0.25,
            None,
        )
    assert len(jobs) == 3
    [bad_job] = [j for j in jobs if j["point_ids"] == [bad["id"]]]
    assert bad_job["status"] == "failed"
    assert "pruned at step 2" in bad_job["reason"]
    status = json.loads((tmp_path / "edge" / "jobs" / bad_job["id"] / "status.json").read_text())
    assert status["state"] == "killed"
    assert all(j["status"] == "finished" for j in jobs if j is not bad_job)


async def test_duplicate_and_late_reports_change_nothing(system: Central) -> None:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {await system.token('bob', ['user'])}"}
        task = await submit(
            http,
            headers,
            {
                "evaluationExec": "train",
                "maxPoints": 1,
                "nPointsPerIteration": 1,
                "pruner": THRESHOLD,
            },
        )
        edge = FakeSite(http, "s2", await system.token("ops", ["edge:s2"]))
        await edge.heartbeat(1)
        [job] = await edge.lease(1, wait=10)
        await edge.event(job, "started")
        url = f"/api/v1/tasks/{task['id']}"

        async def relay(values: list[tuple[int, float]], generation: int | None = None) -> Any:
            reply = await http.post(
                f"/edge/v1/jobs/{job['job_id']}/intermediate",
                json={
                    "generation": job["generation"] if generation is None else generation,
                    "values": [{"step": s, "value": v} for s, v in values],
                },
                headers=edge.headers,
            )
            assert reply.status_code == 200, reply.text
            return reply.json()

        async def point() -> dict[str, Any]:
            [only] = (await http.get(f"{url}/points", headers=headers)).json()
            return dict(only)

        assert (await relay([(0, 1.0), (1, 2.0)]))["stored"] == 2
        again = await relay([(0, 99.0), (1, 99.0)])  # the harvester restarted
        assert (again["accepted"], again["stored"], again["kill"]) == (True, 0, False)
        stale = await relay([(2, 99.0)], generation=job["generation"] + 7)
        assert (stale["accepted"], stale["kill"]) == (False, True)
        assert (await point())["status"] == "pending", "a stale lease's value decided nothing"

        pruned = await relay([(2, 30.0), (3, 31.0)])
        assert (pruned["stored"], pruned["kill"], pruned["detail"]) == (1, True, "pruned at step 2")
        after = await point()
        assert (after["status"], after["loss"], after["pruned_step"]) == ("evaluated", 30.0, 2)

        late = await relay([(4, 0.001)])
        assert (late["stored"], late["kill"]) == (0, True)
        beat = await edge.event(job, "heartbeat")
        assert (beat["kill"], beat["detail"]) == (True, "pruned at step 2")
        # The killed payload's job ends as failed; a result sneaking in is not counted.
        await edge.event(job, "failed", reason="the job was stopped: pruned at step 2")
        assert await point() == after

        async def done() -> bool:
            return (await http.get(url, headers=headers)).json()["status"] == "done"

        await wait_for(done, "the task did not complete after its only point was pruned")
        assert await point() == after
        jobs = (await http.get(f"{url}/jobs", headers=headers)).json()
        assert [j["id"] for j in jobs] == [job["job_id"]], "no retry of a pruned point"


async def test_bad_pruner_is_refused_at_submission(system: Central) -> None:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {await system.token('carol', ['user'])}"}
        body = {
            "config": {
                "evaluationExec": "train",
                "pruner": {"name": "median", "args": {"warmup": 2}},
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert reply.status_code == 422
        [error] = reply.json()["detail"]
        assert error["loc"][-2:] == ["pruner", "args"]
        assert "args.warmup" in error["msg"]
        body["config"]["pruner"] = {"name": "fancy"}
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert reply.status_code == 422
        [error] = reply.json()["detail"]
        assert error["loc"][-2:] == ["pruner", "name"]
        assert "MedianPruner" in error["msg"]
