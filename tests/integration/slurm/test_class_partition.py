"""A compute class mapped to a Slurm partition, for real: the harvester submits each job
the broker assigned to that class into the class's partition.

The dev cluster (deploy/dev/slurm.py) has the one-node default partition ``debug`` and,
with its two namespaced nodes, the partition ``duo`` (hosts hpo-node1, hpo-node2). The
site declares two classes: ``login-like`` on the default partition and ``duo`` with
``batch = {partition = "duo"}``; the task asks for the class ``duo``. Every payload
reports the host it ran on, which must be a duo node, and every batch script must carry
``--partition=duo``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.integration.central import central, file_artifacts

pytestmark = [pytest.mark.slurm, pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(180)]

DUO_NODES = {"hpo-node1", "hpo-node2"}

PAYLOAD = """
import json, socket
json.dump({"status": 0, "loss": 0.5, "message": socket.gethostname()}, open("output.json", "w"))
"""


def duo_partition_up(conf: str) -> None:
    info = subprocess.run(
        ["sinfo", "--noheader", "--partition=duo", "--format=%T"],
        env={**os.environ, "SLURM_CONF": conf},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if not any(s in ("idle", "mixed", "allocated") for s in info.stdout.split()):
        pytest.fail(
            f"Slurm at {conf} has no usable partition 'duo' (sinfo: {info.stdout.strip()!r} "
            f"{info.stderr.strip()!r}): start the dev cluster with its two extra nodes "
            "(`sudo python3 deploy/dev/slurm.py up --two-nodes`, or deploy/dev/infra.py as "
            "root without HPO_DEV_SLURM_NODES=1)",
            pytrace=False,
        )


async def test_jobs_of_a_class_go_to_its_partition(
    slurm_conf: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    duo_partition_up(slurm_conf)
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
                "site": "slurm-classes",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:slurm-classes"]),
                "root": tmp_path / "edge-root",
                "slots": 2,
                "poll_interval": 0.5,
                "heartbeat_interval": 2,
                "lease_wait_seconds": 1,
                "batch": {"kind": "slurm", "walltime": "00:05:00"},
                "compute_classes": [
                    {"name": "login-like"},
                    {"name": "duo", "batch": {"partition": "duo"}},
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
                "resources": {"compute_class": "duo"},
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
        jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=headers)).json()
        hosts = [r["message"] for j in jobs for r in j["results"]]
        assert len(hosts) == 2 and set(hosts) <= DUO_NODES, hosts
        scripts = list((tmp_path / "edge-root" / "workers").glob("*/batch.sh"))
        assert scripts and all("#SBATCH --partition=duo" in s.read_text() for s in scripts)
