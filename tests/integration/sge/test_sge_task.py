"""A whole task whose payloads run as real Grid Engine jobs with no network at all.

The central services (memory bus, SecantusDB) and the real harvester run in this
process; the harvester submits each job to the test cell with ``qsub``, the batch script
starts the node agent under ``unshare -n``, and the payload checks that it cannot reach
the api. Results and metrics still arrive, through the harvester.
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
from tests.integration.slurm.test_offline_task import PAYLOAD

pytestmark = [pytest.mark.sge, pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(240)]


async def test_a_task_completes_on_offline_grid_engine_nodes(
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
        port = system.api_url.rsplit(":", 1)[1]
        site = SiteConfig.model_validate(
            {
                "site": "sge-test",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:sge-test"]),
                "root": tmp_path / "edge-root",
                "slots": 2,
                "poll_interval": 0.5,
                "heartbeat_interval": 2,
                "lease_wait_seconds": 1,
                "isolate_network": True,
                "batch": {"kind": "sge", "walltime": "00:05:00", "gpus_per_node": 1},
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
            deadline = time.monotonic() + 200
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
        scripts = list((tmp_path / "edge-root" / "workers").glob("*/batch.sh"))
        assert len(scripts) >= 4 and "#$ -l gpu=1" in scripts[0].read_text()
        assert "unshare" in scripts[0].read_text()
