"""The central services end to end on SecantusDB and the memory bus, the test acting as
the edge site through the real REST api: generation, retries, lease expiry, auth."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.clock import utcnow
from tests.integration.central import SANDBOX_PYTHON, Central, FakeSite, central, file_artifacts
from tests.waiting import until

pytestmark = [pytest.mark.mongo]

SPACE = {
    "x": {"method": "uniform", "dimension": {"low": -2.0, "high": 2.0}},
    "n": {"method": "uniformint", "dimension": {"low": 1, "high": 4}},
}


def config(**over: Any) -> dict[str, Any]:
    base = {
        "evaluationExec": "python eval.py",
        "maxPoints": 6,
        "nParallelEvaluation": 2,
        "nPointsPerIteration": 4,
        "minUnevaluatedPoints": 2,
        "steering": {"algorithm": "random", "seed": 3},
    }
    return {**base, **over}


def loss_of(job: dict[str, Any]) -> float:
    p = job["points"][0]["params"]
    return float(p["x"] ** 2 + p["n"])


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


async def submit(http: httpx.AsyncClient, token: str, **over: Any) -> dict[str, Any]:
    reply = await http.post(
        "/api/v1/tasks",
        json={"config": config(**over), "searchSpace": SPACE},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def task_view(http: httpx.AsyncClient, token: str, task_id: str) -> dict[str, Any]:
    reply = await http.get(f"/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {token}"})
    reply.raise_for_status()
    result: dict[str, Any] = reply.json()
    return result


async def wait_status(
    http: httpx.AsyncClient, token: str, task_id: str, status: str
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        view = await task_view(http, token, task_id)
        return view if view["status"] == status else None

    return await until(reached)


async def drain(site: FakeSite, behaviour: Any, done: Any) -> list[dict[str, Any]]:
    """Lease and answer jobs with ``behaviour(job)`` until ``done()`` is true."""
    seen: list[dict[str, Any]] = []
    while not await done():
        await site.heartbeat(free=4)
        for job in await site.lease(n=4, wait=0.5):
            seen.append(job)
            await site.event(job, "started", host="node1")
            await behaviour(job)
    return seen


async def test_task_completes_with_bounded_parallelism(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(http, user)
    active_peak = 0

    async def answer(job: dict[str, Any]) -> None:
        nonlocal active_peak
        view = await task_view(http, user, task["id"])
        active_peak = max(active_peak, view["progress"]["active_jobs"])
        assert (await site.finish(job, loss_of(job)))["accepted"]

    async def done() -> bool:
        return (await task_view(http, user, task["id"]))["status"] == "done"

    jobs = await drain(site, answer, done)
    view = await task_view(http, user, task["id"])
    assert view["progress"]["evaluated"] == 6
    assert view["reason"] == "all 6 points evaluated"
    assert len(jobs) == 6
    assert active_peak <= 2
    assert math.isclose(view["best"]["loss"], min(loss_of(j) for j in jobs))
    # points are distinct and inside the space
    params = [tuple(sorted(j["points"][0]["params"].items())) for j in jobs]
    assert len(set(params)) == 6


async def test_failed_attempt_is_retried_and_counted_once(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(
        http,
        user,
        maxPoints=2,
        nParallelEvaluation=2,
        nPointsPerIteration=2,
        minUnevaluatedPoints=0,
    )
    failed_once: set[str] = set()

    async def answer(job: dict[str, Any]) -> None:
        point = job["points"][0]["point_id"]
        if point not in failed_once:
            failed_once.add(point)
            assert (await site.event(job, "failed", reason="CUDA out of memory"))["accepted"]
            return
        assert (await site.finish(job, 1.0))["accepted"]
        # a repeated report (harvester restarted after reporting) changes nothing
        assert (await site.finish(job, 0.5))["accepted"]

    async def done() -> bool:
        return (await task_view(http, user, task["id"]))["status"] == "done"

    jobs = await drain(site, answer, done)
    assert len(jobs) == 4
    points = (
        await http.get(
            f"/api/v1/tasks/{task['id']}/points", headers={"Authorization": f"Bearer {user}"}
        )
    ).json()
    assert [p["attempts"] for p in points] == [2, 2]
    assert [p["loss"] for p in points] == [1.0, 1.0]
    assert all(p["last_error"] == "CUDA out of memory" for p in points)


async def test_always_failing_point_gets_large_loss_after_three_attempts(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
    task = await submit(
        http,
        user,
        maxPoints=1,
        nParallelEvaluation=1,
        nPointsPerIteration=1,
        minUnevaluatedPoints=0,
        failedPointLoss=1e9,
        maxEvaluationJobs=5,
    )

    async def answer(job: dict[str, Any]) -> None:
        await site.event(job, "failed", reason="exit code 1")

    async def over() -> bool:
        return (await task_view(http, user, task["id"]))["status"] == "failed"

    jobs = await drain(site, answer, over)
    assert [j["attempt"] for j in jobs] == [1, 2, 3]
    view = await task_view(http, user, task["id"])
    assert view["progress"]["failed"] == 1
    assert view["reason"].startswith("every evaluation failed: none of 3 jobs gave a loss")
    points = (
        await http.get(
            f"/api/v1/tasks/{task['id']}/points", headers={"Authorization": f"Bearer {user}"}
        )
    ).json()
    assert points[0]["status"] == "failed" and points[0]["loss"] == 1e9


async def test_expired_lease_is_retried_and_late_report_ignored(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            lease_seconds=60,
            home=tmp_path,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=30) as http,
    ):
        user = await system.token("alice", ["user"])
        site = FakeSite(http, "siteA", await system.token("ops", ["edge:siteA"]))
        task = await submit(
            http,
            user,
            maxPoints=1,
            nParallelEvaluation=1,
            nPointsPerIteration=1,
            minUnevaluatedPoints=0,
        )
        await site.heartbeat(free=1)
        first = (await site.lease(wait=10))[0]
        # The site falls silent past its lease: the broker expires it, the point is
        # retried. The expiry is written, not waited for: a lease short enough to wait
        # out would also expire the second one on a loaded machine.
        await system.ctx.store.jobs.col.update_one(
            {"_id": first["job_id"]}, {"$set": {"lease.expires": utcnow() - timedelta(seconds=1)}}
        )
        second: list[dict[str, Any]] = []
        while not second:
            await site.heartbeat(free=1)
            second = await site.lease(wait=0.5)
        late = await site.finish(first, 0.1)
        assert late == {**late, "accepted": False, "kill": True}
        assert second[0]["attempt"] == 2
        assert (await site.finish(second[0], 0.2))["accepted"]
        view = await wait_status(http, user, task["id"], "done")
        assert view["best"]["loss"] == 0.2


async def test_users_see_only_their_tasks(system: Central, http: httpx.AsyncClient) -> None:
    alice = await system.token("alice", ["user"])
    bob = await system.token("bob", ["user"])
    edge = await system.token("ops", ["edge:siteA"])
    task = await submit(http, alice)
    for path in ("", "/points", "/jobs"):
        reply = await http.get(
            f"/api/v1/tasks/{task['id']}{path}", headers={"Authorization": f"Bearer {bob}"}
        )
        assert reply.status_code == 404
    listing = (await http.get("/api/v1/tasks", headers={"Authorization": f"Bearer {bob}"})).json()
    assert listing == []
    assert (await http.get("/api/v1/tasks")).status_code == 401
    assert (
        await http.get("/api/v1/tasks", headers={"Authorization": "Bearer hpo_not-a-token"})
    ).status_code == 401
    assert (
        await http.get("/api/v1/tasks", headers={"Authorization": f"Bearer {edge}"})
    ).status_code == 403
    reply = await http.post(
        "/edge/v1/sites/siteB/heartbeat",
        json={"free_slots": 1},
        headers={"Authorization": f"Bearer {edge}"},
    )
    assert reply.status_code == 403


async def test_bad_submissions_name_the_field(system: Central, http: httpx.AsyncClient) -> None:
    user = await system.token("alice", ["user"])
    headers = {"Authorization": f"Bearer {user}"}
    bad_space = {"lr": {"method": "loguniform", "dimension": {"low": 0, "high": 1}}}
    reply = await http.post(
        "/api/v1/tasks", json={"config": config(), "searchSpace": bad_space}, headers=headers
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"][:3] == ["body", "searchSpace", "lr"]
    reply = await http.post(
        "/api/v1/tasks",
        json={"config": config(nParallelEvaluation=0), "searchSpace": SPACE},
        headers=headers,
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "config", "nParallelEvaluation"]
    reply = await http.post(
        "/api/v1/tasks", json={"config": config(searchSpaceFile="space.json")}, headers=headers
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "files", "space.json"]
    assert (await http.get("/api/v1/tasks", headers=headers)).json() == []


async def test_expired_and_revoked_tokens_are_refused(
    system: Central, http: httpx.AsyncClient
) -> None:

    from services.api.auth import issue_token, revoke_token

    token, secret = await issue_token(system.ctx.store, "carol", ["user"])
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await http.get("/api/v1/whoami", headers=headers)).json()["owner"] == "carol"
    assert await revoke_token(system.ctx.store, system.ctx.bus, token.id)
    # Revoked everywhere once the api has the bus's word (its cached copy dropped).
    while (await http.get("/api/v1/whoami", headers=headers)).status_code != 401:
        await asyncio.sleep(0.05)
    _, expired = await issue_token(system.ctx.store, "carol", ["user"], ttl=timedelta(seconds=-1))
    reply = await http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {expired}"})
    assert reply.status_code == 401
    stored = await system.ctx.store.tokens.list_for_owner("carol")
    assert all(secret not in t.hash for t in stored)  # only hashes are kept


async def test_monitor_lists_own_tasks_with_progress(
    system: Central, http: httpx.AsyncClient
) -> None:
    alice = await system.token("alice", ["user"])
    bob = await system.token("bob", ["user"])
    task = await submit(http, alice)
    async with httpx.AsyncClient(base_url=system.monitor_url, timeout=10) as monitor:
        page = await monitor.get("/")
        assert page.status_code == 200 and 'src="assets/app.js"' in page.text
        script = await monitor.get("/assets/app.js")
        assert '"monitor/api/" + path' in script.text and 'api("tasks"' in script.text
        as_alice = {"Authorization": f"Bearer {alice}"}
        mine = await monitor.get("/monitor/api/tasks", headers=as_alice)
        assert [t["id"] for t in mine.json()] == [task["id"]]
        while mine.json()[0]["progress"] is None:  # counted in the background at first
            await asyncio.sleep(0.1)
            mine = await monitor.get("/monitor/api/tasks", headers=as_alice)
        assert mine.json()[0]["progress"]["max_points"] == 6
        theirs = await monitor.get("/monitor/api/tasks", headers={"Authorization": f"Bearer {bob}"})
        assert theirs.json() == []
        assert (await monitor.get("/monitor/api/tasks")).status_code == 401


IDDS_PROGRAMS = Path(__file__).resolve().parents[1] / "e2e" / "idds_steering"


async def test_an_idds_steering_program_drives_a_task(
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
                "maxPoints": 5,
                "nParallelEvaluation": 2,
                "nPointsPerIteration": 2,
            },
            "searchSpace": space,
            "files": {"random_search.py": program},
        },
        headers={"Authorization": f"Bearer {user}"},
    )
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]

    async def answer(job: dict[str, Any]) -> None:
        p = job["points"][0]["params"]
        assert p["A"] in (1, 4) and 0 <= p["B"] <= 5
        await site.finish(job, (p["B"] - 2) ** 2 + p["A"])

    async def done() -> bool:
        return (await task_view(http, user, task_id))["status"] in ("done", "failed")

    jobs = await drain(site, answer, done)
    view = await task_view(http, user, task_id)
    assert view["status"] == "done", view["reason"]
    assert view["progress"]["evaluated"] == 5 and len(jobs) == 5


async def test_a_broken_steering_program_fails_the_task_with_its_reason(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    program = (IDDS_PROGRAMS / "misbehave.py").read_text()
    reply = await http.post(
        "/api/v1/tasks",
        json={
            "config": {
                "evaluationExec": "x",
                "steeringExec": f"{SANDBOX_PYTHON} misbehave.py invalid_json --in=%IN --out=%OUT",
            },
            "searchSpace": SPACE,
            "files": {
                "misbehave.py": program,
                "random_search.py": (IDDS_PROGRAMS / "random_search.py").read_text(),
            },
        },
        headers={"Authorization": f"Bearer {user}"},
    )
    assert reply.status_code == 201, reply.text
    view = await wait_status(http, user, reply.json()["id"], "failed")
    assert view["reason"].startswith("steering container:")
    assert "JSON" in view["reason"]
