"""Whole tasks whose payloads run in Charliecloud images inside real Slurm jobs, offline.

The central services and the real harvester run in this process; the harvester submits
each job with ``sbatch``, the batch script starts the node agent under ``unshare -n``,
and the agent runs the payload with ``ch-run`` in a Debian image built here
(deploy/dev/images.py): the payload's python is the image's, and it cannot reach the
api. The second test gives a task one image per arch and a site that declares
``ppc64le``: the harvester picks the POWER image, which runs under qemu-user emulation
(binfmt_misc), proving the multi-arch path end to end.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from tests.chimage import image_dir
from tests.integration.central import central, file_artifacts

pytestmark = [pytest.mark.slurm, pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(300)]

PAYLOAD = """
import json, platform, socket, sys, tarfile
p = json.load(open("input.json"))
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    where = "ONLINE"
except OSError:
    where = "offline"
json.dump({"x": p["x"]}, open("metrics.json", "w"))
with tarfile.open("metrics.tgz", "w:gz") as tar:
    tar.add("metrics.json")
seen = f"{where} {platform.machine()} {sys.executable} {open('/etc/debian_version').read()}"
json.dump({"status": 0, "loss": (p["x"] - 0.3) ** 2, "message": seen}, open("output.json", "w"))
"""


async def run_task(
    tmp_path: Path, mongo_db_url: str, bus_prefix: str, arch: str, container: Any, points: int
) -> tuple[dict[str, Any], list[dict[str, Any]], list[Path]]:
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
                "site": "charlie",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:charlie"]),
                "root": tmp_path / "edge-root",
                "arch": arch,
                "slots": 2,
                "poll_interval": 0.5,
                "heartbeat_interval": 2,
                "lease_wait_seconds": 1,
                "isolate_network": True,
                "batch": {"kind": "slurm", "walltime": "00:05:00"},
                "runtime": {"kind": "charliecloud"},
            }
        )
        user = await system.token("alice", ["user"])
        headers = {"Authorization": f"Bearer {user}"}
        body = {
            "config": {
                "evaluationContainer": container,
                "evaluationExec": f"python3 payload.py {port}",
                "evaluationMetrics": "metrics.tgz",
                "maxPoints": points,
                "nParallelEvaluation": 2,
                "nPointsPerIteration": 2,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
            "files": {"payload.py": PAYLOAD},
        }
        answer = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        task = answer.json()
        stop = asyncio.Event()
        harvester = asyncio.create_task(Harvester(site).run(stop))
        try:
            deadline = time.monotonic() + 250
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
        jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=headers)).json()
        scripts = list((tmp_path / "edge-root" / "workers").glob("*/batch.sh"))
        return view, jobs, scripts


async def test_a_task_runs_in_a_charliecloud_image_on_offline_slurm_nodes(
    slurm_conf: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    image = image_dir("amd64")
    view, jobs, scripts = await run_task(
        tmp_path, mongo_db_url, bus_prefix, "amd64", str(image), points=4
    )
    assert view["status"] == "done", (view, jobs)
    assert view["progress"]["evaluated"] == 4
    debian = (image / "etc" / "debian_version").read_text()
    messages = [r["message"] for j in jobs for r in j["results"]]
    assert messages == [f"offline x86_64 /usr/bin/python3 {debian}"] * 4
    assert "unshare" in scripts[0].read_text()


async def test_a_ppc64le_site_runs_the_power_image_under_emulation(
    slurm_conf: str, mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    images = {"amd64": str(image_dir("amd64")), "ppc64le": str(image_dir("ppc64le"))}
    view, jobs, _ = await run_task(tmp_path, mongo_db_url, bus_prefix, "ppc64le", images, points=2)
    assert view["status"] == "done", (view, jobs)
    debian = Path(images["ppc64le"], "etc", "debian_version").read_text()
    messages = [r["message"] for j in jobs for r in j["results"]]
    assert messages == [f"offline ppc64le /usr/bin/python3 {debian}"] * 2
