"""A payload's hostile output fails its job at the central service with the exact
reason, through the real api and the real harvester, and the site goes on: a FIFO
named ``output.json`` (which once blocked the harvester's scan for good) and a loss of
``10**400`` (which once made every scan fail)."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import central, file_artifacts

pytestmark = [pytest.mark.mongo]

PAYLOAD = """\
import os, sys
try:  # the first of the two runs
    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    os.mkfifo("output.json")
except FileExistsError:
    open("output.json", "w").write('{"loss": 1' + "0" * 400 + "}")
"""


async def until(check: Callable[[], Awaitable[Any]]) -> Any:
    """Poll ``check`` until it returns something true; the test's timeout bounds it."""
    while not (value := await check()):
        await asyncio.sleep(0.2)
    return value


async def test_hostile_output_fails_the_job_with_its_reason_at_the_api(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    script = tmp_path / "payload.py"
    script.write_text(PAYLOAD)
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=30) as http,
    ):
        user = await system.token("alice", ["user"])
        headers = {"Authorization": f"Bearer {user}"}
        body = {
            "config": {
                "evaluationExec": " ".join(
                    shlex.quote(str(a)) for a in (sys.executable, script, tmp_path / "first")
                ),
                "maxPoints": 2,
                "nPointsPerIteration": 2,
                "maxAttempts": 1,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert reply.status_code == 201, reply.text
        task = reply.json()
        site = SiteConfig.model_validate(
            {
                "site": "s1",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:s1"]),
                "root": tmp_path / "edge",
                "slots": 2,
                "poll_interval": 0.2,
                "heartbeat_interval": 0.5,
                "lease_wait_seconds": 0.5,
            }
        )
        stop = asyncio.Event()
        harvester = asyncio.create_task(Harvester(site).run(stop))
        try:

            async def failed_jobs() -> list[dict[str, Any]]:
                jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=headers)).json()
                done = [j for j in jobs if j["status"] == "failed"]
                return done if len(done) >= 2 else []

            jobs = await until(failed_jobs)
        finally:
            stop.set()
            await harvester
    reasons = sorted(j["reason"] for j in jobs)
    assert any("output.json is a FIFO; it must be a regular file" in r for r in reasons), reasons
    assert any("output.json holds an integer of 401 digits, out of range" in r for r in reasons)
