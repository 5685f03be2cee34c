"""Users' steering programs through the real services: sandboxed by default, hostile
ones fail their own task only, and what steering cannot run is refused at submission.

The api learns what steering can run from the capability record each steering process
writes at start (``shared.store.steering``), so each test waits for that record before
it submits, as a client arriving after start-up would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.clock import utcnow
from tests.integration.central import SANDBOX_PYTHON, Central, central, file_artifacts
from tests.integration.test_pipeline import IDDS_PROGRAMS, SPACE, task_view

pytestmark = [pytest.mark.mongo]

System = Callable[..., contextlib.AbstractAsyncContextManager[tuple[Central, httpx.AsyncClient]]]


@pytest.fixture
def system(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> System:
    @contextlib.asynccontextmanager
    async def start(**settings: Any) -> AsyncIterator[tuple[Central, httpx.AsyncClient]]:
        async with central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path / "home",
            **settings,
        ) as c:
            while not await c.ctx.store.steering.in_force(utcnow()):
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=c.api_url, timeout=30) as http:
                yield c, http

    return start


def programs() -> dict[str, str]:
    return {
        name: (IDDS_PROGRAMS / name).read_text()
        for name in ("hostile.py", "random_search.py", "misbehave.py")
    }


async def submit(
    http: httpx.AsyncClient, token: str, steering_exec: str, **config: Any
) -> httpx.Response:
    return await http.post(
        "/api/v1/tasks",
        json={
            "config": {"evaluationExec": "x", "steeringExec": steering_exec, **config},
            "searchSpace": SPACE,
            "files": programs(),
        },
        headers={"Authorization": f"Bearer {token}"},
    )


async def until_settled(http: httpx.AsyncClient, token: str, task_id: str) -> dict[str, Any]:
    """The task's view once steering failed it or gave it points."""
    while True:
        view = await task_view(http, token, task_id)
        if view["status"] == "failed" or view["progress"]["points"] > 0:
            return view
        await asyncio.sleep(0.05)


GOOD = f"{SANDBOX_PYTHON} random_search.py --in=%IN --out=%OUT --n=%NUM_POINTS --max=%MAX_POINTS"


async def test_id_into_tmp_proof_never_reaches_the_host(system: System) -> None:
    proof = Path("/tmp") / f"proof-{uuid.uuid4().hex}"
    async with system() as (c, http):
        user = await c.token("mallory", ["user"])
        reply = await submit(http, user, f"id > {shlex.quote(str(proof))}")
        assert reply.status_code == 201, reply.text
        view = await until_settled(http, user, reply.json()["id"])
    assert not proof.exists(), proof.read_text()
    assert view["status"] == "failed"
    # It wrote the sandbox's private /tmp, which is thrown away, and no points.
    assert "wrote no output.json" in view["reason"]


async def test_a_fork_bomb_fails_its_task_and_steering_goes_on(system: System) -> None:
    async with system(steering_processes=24) as (c, http):
        user = await c.token("mallory", ["user"])
        bomb = f"{SANDBOX_PYTHON} hostile.py forkbomb --in=%IN --out=%OUT"
        bad = await submit(http, user, bomb)
        assert bad.status_code == 201, bad.text
        good = await submit(http, user, GOOD, maxPoints=4)
        assert good.status_code == 201, good.text
        bad_view = await until_settled(http, user, bad.json()["id"])
        good_view = await until_settled(http, user, good.json()["id"])
    assert bad_view["status"] == "failed"
    assert "fork failed after" in bad_view["reason"]
    assert "24 processes and threads" in bad_view["reason"]
    assert good_view["status"] == "running", good_view["reason"]
    assert good_view["progress"]["points"] > 0


async def test_an_image_is_refused_at_submission_where_steering_runs_none(
    system: System,
) -> None:
    async with system(steering_image_runtime="none") as (c, http):
        user = await c.token("alice", ["user"])
        reply = await submit(http, user, GOOD, steeringContainer="docker://example.org/steer:1")
        listed = await http.get("/api/v1/tasks", headers={"Authorization": f"Bearer {user}"})
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "config", "steeringContainer"]
    assert "cannot run steeringContainer images" in error["msg"]
    assert "HPO_STEERING_IMAGE_RUNTIME=none" in error["msg"]
    assert listed.json() == []


async def test_an_image_is_accepted_where_steering_found_an_image_runtime(
    system: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    apptainer = tools / "apptainer"
    apptainer.write_text("#!/bin/sh\necho 'apptainer version 1.3.4'\n")
    apptainer.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    async with system() as (c, http):
        user = await c.token("alice", ["user"])
        reply = await submit(http, user, GOOD, steeringContainer="docker://example.org/steer:1")
        [record] = await c.ctx.store.steering.in_force(utcnow())
    assert reply.status_code == 201, reply.text
    assert record.images and record.image_runtime == "apptainer"


async def test_programs_are_refused_at_submission_where_the_sandbox_cannot_start(
    system: System, tmp_path: Path
) -> None:
    async with system(steering_bwrap=str(tmp_path / "no-bwrap")) as (c, http):
        user = await c.token("alice", ["user"])
        reply = await submit(http, user, GOOD)
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "config", "steeringExec"]
    assert "cannot run steering programs" in error["msg"]
    assert "install bubblewrap" in error["msg"]


async def test_a_task_that_reaches_steering_without_a_sandbox_fails_with_the_reason(
    system: System, tmp_path: Path
) -> None:
    async with system(steering_bwrap=str(tmp_path / "no-bwrap")) as (c, http):
        await c.ctx.store.steering.col.delete_many({})  # as before any steering started
        user = await c.token("alice", ["user"])
        reply = await submit(http, user, GOOD)
        assert reply.status_code == 201, reply.text
        view = await until_settled(http, user, reply.json()["id"])
    assert view["status"] == "failed"
    assert view["reason"].startswith(
        "steering container: this service cannot run steering programs: the bwrap sandbox"
    )
