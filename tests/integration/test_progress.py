"""Honest progress: segmented tasks count per segment against a correct total, online
studies count trials with no fake end and can be closed (central services on
the memory store and bus; the test is the site and the online worker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from client.cli import app
from client.render import progress_lines
from tests.integration.central import Central, central, file_artifacts
from tests.integration.test_online import steering_serves
from tests.integration.test_pipeline import task_view
from tests.integration.test_segments import run_to_end
from tests.integration.test_segments import submit as submit_segmented


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
        await steering_serves(c)
        yield c


@pytest.fixture
async def http(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def cli(system: Central, token: str, *args: str) -> str:
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        [*args, "--url", system.api_url, "--token", token],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    return result.stdout


async def test_a_segmented_task_shows_progress_per_segment_and_a_correct_total(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    reply = await submit_segmented(http, user, {"steering": {"algorithm": "random", "seed": 2}}, {})
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]
    await run_to_end(system, http, user, task_id)
    view = await task_view(http, user, task_id)
    progress = view["progress"]
    assert (progress["evaluated"], progress["max_points"]) == (6, 6)
    assert [(s["segment"], s["evaluated"], s["max_points"]) for s in progress["segments"]] == [
        ("arms", 3, 3),
        ("legs", 3, 3),
    ]
    out = await cli(system, user, "status", task_id)
    assert "points 6 of 6: 6 evaluated" in out
    assert "segment arms: 3 of 3: 3 evaluated" in out
    assert "segment legs: 3 of 3: 3 evaluated" in out
    shown = await monitor_row(system, user, task_id)
    assert (shown["evaluated"], shown["max_points"]) == (6, 6)


async def monitor_row(system: Central, token: str, task_id: str) -> dict[str, Any]:
    """The task's progress as the dashboard shows it."""
    async with httpx.AsyncClient(base_url=system.monitor_url, timeout=30) as mon:
        reply = await mon.get(f"/monitor/api/tasks/{task_id}", headers=bearer(token))
    assert reply.status_code == 200, reply.text
    progress: dict[str, Any] = reply.json()["progress"]
    return progress


STUDY = {
    "title": "progress",
    "properties": {"x": "optuna#uniform(-1, 1)", "epochs": 3},
    "sampler": {"name": "RandomSampler", "args": {"seed": 1}},
}


async def open_study(http: httpx.AsyncClient, token: str, **extra: Any) -> dict[str, Any]:
    reply = await http.post("/api/v1/studies", json={**STUDY, **extra}, headers=bearer(token))
    assert reply.status_code == 201, reply.text
    study: dict[str, Any] = reply.json()
    return study


async def ask_and_tell(http: httpx.AsyncClient, token: str, study_id: str, n: int) -> None:
    for _ in range(n):
        trial = (await http.post(f"/api/v1/studies/{study_id}/ask", headers=bearer(token))).json()
        reply = await http.post(
            f"/api/v1/studies/{study_id}/tell",
            json={"trial": trial["trial"], "loss": trial["params"]["x"] ** 2},
            headers=bearer(token),
        )
        assert reply.status_code == 200, reply.text


async def test_an_online_study_counts_trials_without_a_fake_end(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    study = await open_study(http, user)
    await ask_and_tell(http, user, study["id"], 3)
    await http.post(f"/api/v1/studies/{study['id']}/ask", headers=bearer(user))
    view = await task_view(http, user, study["id"])
    assert view["status"] == "running"
    progress = view["progress"]
    assert progress["max_points"] is None and progress["segments"] == []
    assert (progress["points"], progress["evaluated"], progress["pending"]) == (4, 3, 1)
    out = await cli(system, user, "status", study["id"])
    assert "trials 4: 3 told, 0 failed, 1 running" in out
    assert "1000000" not in out
    shown = await monitor_row(system, user, study["id"])
    assert (shown["max_points"], shown["points"], shown["evaluated"]) == (None, 4, 3)
    assert progress_lines(view) == [
        "trials 4: 3 told, 0 failed, 1 running (an online study: open until it is closed)"
    ]


async def test_the_owner_closes_a_study_through_the_api_and_the_cli(
    system: Central, http: httpx.AsyncClient
) -> None:
    alice = await system.token("alice", ["user"])
    bob = await system.token("bob", ["user"])
    first = await open_study(http, alice)
    second = await open_study(http, alice, title="second")
    await ask_and_tell(http, alice, first["id"], 2)

    assert (
        await http.post(f"/api/v1/studies/{first['id']}/close", headers=bearer(bob))
    ).status_code == 404
    reply = await http.post(f"/api/v1/studies/{first['id']}/close", headers=bearer(alice))
    assert reply.status_code == 200, reply.text
    assert (reply.json()["status"], reply.json()["reason"]) == ("done", "closed by its owner")
    again = await http.post(f"/api/v1/studies/{first['id']}/close", headers=bearer(alice))
    assert again.json()["status"] == "done"
    refused = await http.post(f"/api/v1/studies/{first['id']}/ask", headers=bearer(alice))
    assert refused.status_code == 409 and "closed by its owner" in refused.text
    view = await task_view(http, alice, first["id"])
    assert (view["status"], view["reason"], view["progress"]["evaluated"]) == (
        "done",
        "closed by its owner",
        2,
    )

    out = await cli(system, alice, "close", second["id"])
    assert f"{second['id']}: done (closed by its owner)" in out
    assert (await task_view(http, alice, second["id"]))["status"] == "done"


async def test_a_study_closes_after_the_idle_time_its_owner_sets(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    study = await open_study(http, user)
    await ask_and_tell(http, user, study["id"], 1)
    out = await cli(system, user, "close", study["id"], "--after-idle", "0.5")
    assert "closes after 0.5 s without an ask or a tell" in out
    while (view := await task_view(http, user, study["id"]))["status"] in ("running", "finishing"):
        await asyncio.sleep(0.1)
    assert (view["status"], view["reason"]) == (
        "done",
        "closed after 0.5 s without an ask or a tell",
    )


async def test_an_idle_timeout_is_set_when_the_study_is_opened_and_checked(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    bad = await http.post(
        "/api/v1/studies", json={**STUDY, "idle_timeout": 0}, headers=bearer(user)
    )
    assert bad.status_code == 422 and "idle_timeout" in bad.text
    study = await open_study(http, user, idle_timeout=3600)
    assert study["idle_timeout"] == 3600 and study["status"] == "running"
    cleared = await http.patch(
        f"/api/v1/studies/{study['id']}", json={"idle_timeout": None}, headers=bearer(user)
    )
    assert cleared.status_code == 200 and cleared.json()["idle_timeout"] is None
