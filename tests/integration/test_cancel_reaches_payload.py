"""Cancelling a task stops its running payloads at the site: the api answers the
harvester's next job heartbeat with ``kill``, the harvester writes the kill file, and the
node agent terminates the payload."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import central, file_artifacts


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    while not await predicate():  # waiting for ``what``; the test's timeout bounds it
        await asyncio.sleep(0.2)


async def test_cancel_kills_the_running_payload(
    store_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    async with (
        central(
            mongo_url=store_url,
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
                "evaluationExec": f'{sys.executable} -c "import time; time.sleep(120)"',
                "maxPoints": 1,
                "nPointsPerIteration": 1,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        task = (await http.post("/api/v1/tasks", json=body, headers=headers)).json()
        site = SiteConfig.model_validate(
            {
                "site": "s1",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:s1"]),
                "root": tmp_path / "edge",
                "poll_interval": 0.2,
                "heartbeat_interval": 0.5,
                "lease_wait_seconds": 0.5,
                "kill_grace_seconds": 2,
            }
        )
        stop = asyncio.Event()
        harvester = asyncio.create_task(Harvester(site).run(stop))
        jobs_dir = tmp_path / "edge" / "jobs"

        def status() -> dict[str, object]:
            for path in jobs_dir.glob("*/status.json"):
                return dict(json.loads(path.read_text()))
            return {}

        try:

            async def payload_running() -> bool:
                return status().get("pid") is not None

            await wait_for(payload_running, "the payload never started")
            pid = status()["pid"]
            assert isinstance(pid, int)
            reply = await http.post(f"/api/v1/tasks/{task['id']}/cancel", headers=headers)
            assert reply.json()["status"] == "cancelled"

            async def killed() -> bool:
                return status().get("state") == "killed"

            await wait_for(killed, f"the payload was not killed: {status()}")
            assert not os.path.exists(f"/proc/{pid}")
        finally:
            stop.set()
            await harvester
        jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=headers)).json()
        assert [j["status"] for j in jobs] == ["cancelled"]
