"""A harvester that dies between receiving a lease and staging the job loses nothing:
at start it asks the api which leases it holds and stages the missing ones."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import FakeSite, central, file_artifacts


async def test_a_lease_lost_in_a_crash_is_recovered_without_a_new_attempt(
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
        site_token = await system.token("ops", ["edge:s1"])
        user = await system.token("alice", ["user"])
        headers = {"Authorization": f"Bearer {user}"}
        body = {
            "config": {
                "evaluationExec": f'{sys.executable} -c "import json; '
                "json.dump({'loss': 0.5}, open('output.json', 'w'))\"",
                "maxPoints": 1,
                "nPointsPerIteration": 1,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        task = (await http.post("/api/v1/tasks", json=body, headers=headers)).json()
        # The "crashed" harvester: its lease request was answered, then it died.
        crashed = FakeSite(http, "s1", site_token)
        await crashed.heartbeat(free=1)
        lost = await crashed.lease(wait=10)
        assert len(lost) == 1

        site = SiteConfig.model_validate(
            {
                "site": "s1",
                "api_url": system.api_url,
                "token": site_token,
                "root": tmp_path / "edge",
                "slots": 1,
                "poll_interval": 0.2,
                "heartbeat_interval": 1,
                "lease_wait_seconds": 0.5,
            }
        )
        stop = asyncio.Event()
        harvester = asyncio.create_task(Harvester(site).run(stop))
        try:
            while True:
                view = (await http.get(f"/api/v1/tasks/{task['id']}", headers=headers)).json()
                if view["status"] == "done":
                    break
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await harvester
        jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=headers)).json()
        assert [(j["id"], j["attempt"], j["status"]) for j in jobs] == [
            (lost[0]["job_id"], 1, "finished")
        ]
