"""A checkpoint saved at one site and resumed at another (issue 13, 5b).

Two real harvesters (two site roots, the local batch system, the process runtime) work
for the in-process central services. The payload trains in epochs, saves ``epoch.txt``
after each and reports the epoch it started from. At the first site it pauses after
epoch PAUSE_AT and is stopped there by the batch system (the local batch's cancel:
SIGTERM, as a walltime or ``scancel`` would); the node agent's final snapshot goes up
through the api, the job ends ``preempted``, and that site stops (its last heartbeat
said it was full). The retry is leased by the second site, which restores the
checkpoint and trains only the remaining epochs.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import Central, central, file_artifacts
from tests.waiting import until

pytestmark = [pytest.mark.mongo, pytest.mark.slow]

EPOCHS = 6
PAUSE_AT = 3
PAYLOAD = f"""
import json, os, time
start = int(open("epoch.txt").read()) if os.path.exists("epoch.txt") else 0
print("start", start, flush=True)
for epoch in range(start + 1, {EPOCHS} + 1):
    with open("epoch.tmp", "w") as f:
        f.write(str(epoch))
    os.replace("epoch.tmp", "epoch.txt")
    print("epoch", epoch, flush=True)
    if start == 0 and epoch == {PAUSE_AT}:
        print("paused", flush=True)
        while True:  # stopped here by the batch system
            time.sleep(0.05)
json.dump({{"status": 0, "loss": 0.5, "message": f"start={{start}}"}}, open("output.json", "w"))
"""


def site_config(system: Central, name: str, token: str, root: Path) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": name,
            "api_url": system.api_url,
            "token": token,
            "root": root,
            "slots": 1,
            "poll_interval": 0.2,
            "heartbeat_interval": 0.5,
            "kill_grace_seconds": 3,
            "lease_wait_seconds": 0.5,
        }
    )


async def test_a_checkpoint_saved_at_one_site_is_resumed_at_another(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
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
        headers = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {
                "evaluationExec": f"{sys.executable} train.py",
                "checkPointToSave": "epoch.txt",
                "maxPoints": 1,
                "nPointsPerIteration": 1,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
            "files": {"train.py": PAYLOAD},
        }
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert reply.status_code == 201, reply.text
        task_id = reply.json()["id"]

        async def get(path: str) -> Any:
            return (await http.get(f"/api/v1/tasks/{task_id}{path}", headers=headers)).json()

        # Site A, driven step by step: it leases the job and then reports itself full.
        root_a, root_b = tmp_path / "site-a", tmp_path / "site-b"
        token_a = await system.token("ops", ["edge:site-a"])
        site_a = Harvester(site_config(system, "site-a", token_a, root_a))
        try:
            site_a.load()

            async def leased_at_a() -> bool:
                await site_a.heartbeat_site()
                return await site_a.lease_once(0.5) == 1

            await until(leased_at_a)
            await site_a.heartbeat_site()  # the last word of site A: no free slot
            (job_a,) = site_a.jobs.values()
            log_a = job_a.paths.payload_log

            async def paused() -> bool:
                await site_a.scan()
                return log_a.exists() and "paused" in log_a.read_text()

            await until(paused)
            assert job_a.record.batch_id is not None
            site_a.batch.cancel(job_a.record.batch_id)  # what a walltime or scancel does

            async def reported() -> bool:
                await site_a.scan()
                return not site_a.jobs

            await until(reported)
        finally:
            await site_a.aclose()  # site A is stopped from here on

        jobs = await get("/jobs")
        assert [(j["status"], j["site"]) for j in jobs] == [("preempted", "site-a")]

        # Site B runs as a daemon and takes the retry.
        token_b = await system.token("ops", ["edge:site-b"])
        stop = asyncio.Event()
        site_b = asyncio.create_task(
            Harvester(site_config(system, "site-b", token_b, root_b)).run(stop)
        )
        try:

            async def ended() -> Any:
                assert not site_b.done(), site_b
                view = await get("")
                return view if view["status"] in ("done", "failed", "cancelled") else None

            view = await until(ended)
        finally:
            stop.set()
            await site_b
        assert view["status"] == "done", view

        jobs = await get("/jobs")
        assert [(j["attempt"], j["status"], j["site"]) for j in jobs] == [
            (1, "preempted", "site-a"),
            (1, "finished", "site-b"),
        ]
        assert jobs[1]["results"][0]["message"] == f"start={PAUSE_AT}"
        log_b = (root_b / "jobs" / jobs[1]["id"] / "payload.log").read_text()
        assert f"start {PAUSE_AT}\n" in log_b and f"epoch {PAUSE_AT}\n" not in log_b
        assert f"epoch {EPOCHS}\n" in log_b
        assert not (root_b / "jobs" / jobs[0]["id"]).exists()
        assert not (root_a / "jobs" / jobs[1]["id"]).exists()
        points = await get("/points")
        assert [(p["attempts"], p["preemptions"], p["loss"]) for p in points] == [(1, 1, 0.5)]
