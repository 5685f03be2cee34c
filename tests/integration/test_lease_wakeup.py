"""A waiting lease poll is woken by the bus, not by polling the database, and a lost
wake-up still ends in a lease (the recheck)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.central import Central, FakeSite, central, file_artifacts

pytestmark = [pytest.mark.mongo]

TASK = {
    "config": {
        "evaluationExec": f"{sys.executable} -c pass",
        "maxPoints": 1,
        "nPointsPerIteration": 1,
    },
    "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
}


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
def bus_url(request: pytest.FixtureRequest, amqp_prefix_cleanup: list[str]) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("amqp_url")
    amqp_prefix_cleanup.append(url)
    return url


def running(
    bus_url: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path, recheck: float
) -> contextlib.AbstractAsyncContextManager[Central]:
    return central(
        mongo_url=mongo_db_url,
        bus_url=bus_url,
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
        lease_poll_interval=3600.0,  # were the api polling, the wait would outlast the test
        lease_recheck_seconds=recheck,
    )


def count_calls(system: Central) -> list[str]:
    """Record each database lease attempt the api makes."""
    calls: list[str] = []
    jobs = system.ctx.store.jobs
    original: Callable[..., Awaitable[Any]] = jobs.lease_next

    async def counted(site: str, **kwargs: Any) -> Any:
        calls.append(site)
        return await original(site, **kwargs)

    jobs.lease_next = counted  # type: ignore[method-assign,assignment]
    return calls


async def test_a_job_assigned_during_a_wait_ends_it_with_one_more_read(
    bus_url: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    async with (
        running(bus_url, mongo_db_url, bus_prefix, tmp_path, recheck=3600.0) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=120) as http,
    ):
        user = await system.token("alice", ["user"])
        site = FakeSite(http, "s1", await system.token("ops", ["edge:s1"]))
        reply = await http.post(
            "/api/v1/tasks", json=TASK, headers={"Authorization": f"Bearer {user}"}
        )
        assert reply.status_code == 201, reply.text
        calls = count_calls(system)

        waiting = asyncio.create_task(site.lease(wait=60))
        while not calls:  # the poll has read the database once and waits
            await asyncio.sleep(0.05)
        await site.heartbeat(free=1)  # the broker assigns the job and says so on the bus

        jobs = await waiting
        assert len(jobs) == 1
        assert calls == ["s1", "s1"]  # the first read, and one after the wake-up


async def test_without_a_wake_up_the_recheck_finds_the_job(
    bus_url: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    async with (
        running(bus_url, mongo_db_url, bus_prefix, tmp_path, recheck=0.2) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=120) as http,
    ):
        user = await system.token("alice", ["user"])
        site = FakeSite(http, "s1", await system.token("ops", ["edge:s1"]))
        reply = await http.post(
            "/api/v1/tasks", json=TASK, headers={"Authorization": f"Bearer {user}"}
        )
        assert reply.status_code == 201, reply.text
        assert system.assembly is not None
        api = next(app for name, app, _ in system.assembly.web if name == "api")
        api.state.wakeups.wake = lambda site: None  # every hint lost

        waiting = asyncio.create_task(site.lease(wait=60))
        await site.heartbeat(free=1)
        assert len(await waiting) == 1
