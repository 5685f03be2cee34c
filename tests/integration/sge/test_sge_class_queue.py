"""A compute class mapped to a Grid Engine queue, for real: the harvester submits each
job the broker assigned to that class into the class's queue.

The dev cell (deploy/dev/sge.py) has two queues on its one host, all.q and gpu.q, and
sorts them by sequence number, so a job that names no queue runs in all.q while it has
room. The site declares two classes, ``plain`` (no options) and ``gpuq`` with
``batch = {queue = "gpu.q"}``; the task asks for ``gpuq``. Every payload reports the
queue Grid Engine ran it in (``$QUEUE``, passed to the payload by the runtime's
``pass_env``):
gpu.q for all of them, although all.q had room.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import central, file_artifacts

pytestmark = [pytest.mark.sge, pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(240)]

PAYLOAD = """
import json, os
result = {"status": 0, "loss": 0.5, "message": os.environ.get("QUEUE", "?")}
json.dump(result, open("output.json", "w"))
"""


async def test_jobs_of_a_class_go_to_its_queue(
    sge_cell: dict[str, str], mongo_db_url: str, bus_prefix: str, tmp_path: Path
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
        site = SiteConfig.model_validate(
            {
                "site": "sge-classes",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:sge-classes"]),
                "root": tmp_path / "edge-root",
                "slots": 2,
                "poll_interval": 0.5,
                "heartbeat_interval": 2,
                "lease_wait_seconds": 1,
                "batch": {"kind": "sge", "walltime": "00:05:00"},
                "runtime": {"kind": "process", "pass_env": ["QUEUE"]},
                "compute_classes": [
                    {"name": "plain"},
                    {"name": "gpuq", "batch": {"queue": "gpu.q"}},
                ],
            }
        )
        user = await system.token("alice", ["user"])
        headers = {"Authorization": f"Bearer {user}"}
        body = {
            "config": {
                "evaluationExec": f"{sys.executable} payload.py",
                "maxPoints": 2,
                "nParallelEvaluation": 2,
                "nPointsPerIteration": 2,
                "resources": {"compute_class": "gpuq"},
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
            "files": {"payload.py": PAYLOAD},
        }
        created = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert created.status_code in (200, 201), created.text
        task = created.json()
        stop = asyncio.Event()
        harvester = asyncio.create_task(Harvester(site).run(stop))
        try:
            while True:
                view = (await http.get(f"/api/v1/tasks/{task['id']}", headers=headers)).json()
                if view["status"] in ("done", "failed", "cancelled"):
                    break
                assert not harvester.done(), harvester
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await harvester
        assert view["status"] == "done", view
        jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=headers)).json()
        queues = [r["message"] for j in jobs for r in j["results"]]
        assert queues == ["gpu.q", "gpu.q"], queues
        scripts = list((tmp_path / "edge-root").glob("**/batch.sh"))
        assert scripts and all("#$ -q gpu.q" in s.read_text() for s in scripts)
