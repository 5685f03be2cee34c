"""Sites declare what they can run and the broker honours it: central services
(memory store and bus) and real harvesters running payloads through the local batch
system and the process runtime."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import Central, central, file_artifacts

IMAGE = "docker://registry.example.org/eval:1"
EVAL = "import json; json.dump({'loss': 0.25}, open('output.json', 'w'))\n"


@pytest.fixture
async def system(store_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=store_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        yield c


async def site(system: Central, tmp_path: Path, name: str, **runtime: Any) -> Harvester:
    config = SiteConfig.model_validate(
        {
            "site": name,
            "api_url": system.api_url,
            "token": await system.token("ops", [f"edge:{name}"]),
            "root": tmp_path / name,
            "poll_interval": 0.2,
            "heartbeat_interval": 0.5,
            "lease_wait_seconds": 0.5,
            "runtime": {"kind": "process", **runtime},
        }
    )
    return Harvester(config)


async def test_jobs_wait_for_a_site_that_can_run_their_image(
    system: Central, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        user = await system.token("alice", ["user"])
        headers = {"Authorization": f"Bearer {user}"}
        body = {
            "config": {
                "evaluationExec": f"{sys.executable} eval.py",
                "evaluationContainer": IMAGE,
                "maxPoints": 1,
                "nPointsPerIteration": 1,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
            "files": {"eval.py": EVAL},
        }
        task = (await http.post("/api/v1/tasks", json=body, headers=headers)).json()
        url = f"/api/v1/tasks/{task['id']}"

        async def jobs() -> list[tuple[str, str | None]]:
            listed = (await http.get(f"{url}/jobs", headers=headers)).json()
            return [(j["status"], j["site"]) for j in listed]

        plain = await site(system, tmp_path, "plain")
        while True:  # heartbeat (the process runtime, no image), ask for jobs
            await plain.run_once()
            view = (await http.get(url, headers=headers)).json()
            if view.get("waiting") or any(status != "defined" for status, _ in await jobs()):
                break
        assert await jobs() == [("defined", None)]
        assert view["waiting"] == (
            f"no live site can run image {IMAGE} (plain: its process runtime runs no "
            "container image)"
        )
        assert view["status"] == "running"
        async with httpx.AsyncClient(base_url=system.monitor_url, timeout=30) as mon:
            shown = (await mon.get(f"/monitor/api/tasks/{task['id']}", headers=headers)).json()
        assert shown["waiting"] == view["waiting"]  # the dashboard says why, too
        for _ in range(3):  # the site keeps asking: it is never given the job
            await plain.run_once(lease_wait=0.2)
        assert await jobs() == [("defined", None)]
        assert not list((tmp_path / "plain").glob("jobs/*"))
        stored = await system.ctx.store.sites.get("plain")
        assert stored is not None
        assert stored.model_dump()["capabilities"] == {
            "runtime": "process",
            "image_schemes": [],
            "ignores_images": False,
            "needs_image": False,
        }

        lenient = await site(system, tmp_path, "lenient", ignore_image=True)
        stop = asyncio.Event()
        running = asyncio.create_task(lenient.run(stop))
        try:
            while (view := (await http.get(url, headers=headers)).json())["status"] == "running":
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await running
        assert view["status"] == "done", view["reason"]
        record = await system.ctx.store.tasks.get(task["id"])
        assert record is not None and record.waiting == ""
        assert await jobs() == [("finished", "lenient")]
        await plain.aclose()
