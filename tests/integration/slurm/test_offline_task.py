"""A whole task whose payloads run inside real Slurm jobs with no network at all.

The central services (memory bus, SecantusDB) and the real harvester run in this
process; the harvester submits each job to the test cluster with ``sbatch``, the batch
script starts the node agent under ``unshare -n``, and the payload checks that it cannot
reach the api. Results and metrics tarballs still arrive, through the harvester.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import central, file_artifacts

pytestmark = [pytest.mark.slurm, pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(180)]

PAYLOAD = """
import json, socket, sys, tarfile
p = json.load(open("input.json"))
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    where = "ONLINE"
except OSError:
    where = "offline"
json.dump({"x": p["x"]}, open("metrics.json", "w"))
with tarfile.open("metrics.tgz", "w:gz") as tar:
    tar.add("metrics.json")
json.dump({"status": 0, "loss": (p["x"] - 0.3) ** 2, "message": where}, open("output.json", "w"))
"""


async def test_a_task_completes_on_offline_slurm_nodes(
    slurm_conf: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path
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
        port = system.api_url.rsplit(":", 1)[1]
        site = SiteConfig.model_validate(
            {
                "site": "slurm-test",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:slurm-test"]),
                "root": tmp_path / "edge-root",
                "slots": 2,
                "poll_interval": 0.5,
                "heartbeat_interval": 2,
                "lease_wait_seconds": 1,
                "isolate_network": True,
                "batch": {"kind": "slurm", "walltime": "00:05:00"},
            }
        )
        user = await system.token("alice", ["user"])
        headers = {"Authorization": f"Bearer {user}"}
        body = {
            "config": {
                "evaluationExec": f"{sys.executable} payload.py {port}",
                "evaluationMetrics": "metrics.tgz",
                "maxPoints": 4,
                "nParallelEvaluation": 2,
                "nPointsPerIteration": 2,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
            "files": {"payload.py": PAYLOAD},
        }
        task = (await http.post("/api/v1/tasks", json=body, headers=headers)).json()
        stop = asyncio.Event()
        harvester = asyncio.create_task(Harvester(site).run(stop))
        try:
            deadline = time.monotonic() + 150
            while True:
                view = (await http.get(f"/api/v1/tasks/{task['id']}", headers=headers)).json()
                if view["status"] in ("done", "failed", "cancelled"):
                    break
                assert time.monotonic() < deadline, view
                assert not harvester.done(), harvester
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await harvester
        assert view["status"] == "done", view
        assert view["progress"]["evaluated"] == 4
        jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=headers)).json()
        assert [r["message"] for j in jobs for r in j["results"]] == ["offline"] * 4
        artifacts = await http.get(f"/api/v1/tasks/{task['id']}/artifacts", headers=headers)
        assert sum(a["kind"] == "metrics" for a in artifacts.json()) == 4
        batch_logs = list((tmp_path / "edge-root" / "workers").glob("*/batch.sh"))
        assert len(batch_logs) >= 4 and "unshare" in batch_logs[0].read_text()
