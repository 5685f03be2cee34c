"""The acceptance test of checkpoints: a training job cancelled on a real Slurm cluster
resumes from its checkpoint in a new batch job, without using an attempt.

The central services (memory bus, SecantusDB, moto S3) and the real harvester run in
this process. The payload trains for EPOCHS epochs and saves ``epoch.txt`` after each;
once a few epochs are saved the test ``scancel``s the batch job. The node agent takes a
final snapshot and reports ``preempted``; the harvester uploads it to S3 through the
api; the point's next job is staged with the checkpoint extracted and runs only the
remaining epochs.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.documents import NodeSettings
from edge.harvester.daemon import Harvester
from shared.artifacts import open_artifacts
from shared.edge_api import JobSpec
from tests.integration.central import central
from tests.integration.slurm.conftest import SlurmFactory

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.mongo,
    pytest.mark.s3,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

EPOCHS = 12
PAYLOAD = f"""
import json, os, socket, time
start = int(open("epoch.txt").read()) if os.path.exists("epoch.txt") else 0
for epoch in range(start + 1, {EPOCHS} + 1):
    time.sleep(0.5)
    with open("epoch.tmp", "w") as f:
        f.write(str(epoch))
    os.replace("epoch.tmp", "epoch.txt")
    print("epoch", epoch, flush=True)
nets = ",".join(sorted(n for _, n in socket.if_nameindex()))  # "lo" alone: no network
message = f"start={{start}} ran={{{EPOCHS} - start}} nets={{nets}}"
json.dump({{"status": 0, "loss": 0.5, "message": message}}, open("output.json", "w"))
"""


class SecondsHarvester(Harvester):
    """checkPointInterval counted in seconds instead of minutes, through job.json."""

    def node_settings(self, spec: JobSpec, image: str | None) -> NodeSettings:
        settings = super().node_settings(spec, image)
        return settings.model_copy(update={"checkpoint_unit_seconds": 1.0})


def last_epoch(log: Path) -> int:
    epochs = [
        int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("epoch ")
    ]
    return epochs[-1] if epochs else 0


async def wait_for(what: str, check: Any, limit: float = 150) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


async def test_a_cancelled_training_job_resumes_from_its_checkpoint(
    slurm: SlurmFactory, mongo_db_url: str, bus_prefix: str, s3_bucket_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "edge-root"
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=s3_bucket_url,
            home=tmp_path,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=30) as http,
    ):
        site = SiteConfig.model_validate(
            {
                "site": "slurm-test",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:slurm-test"]),
                "root": root,
                "slots": 1,
                "poll_interval": 0.5,
                "heartbeat_interval": 1,
                "kill_grace_seconds": 3,
                "lease_wait_seconds": 1,
                "batch": {"kind": "slurm", "walltime": "00:05:00"},
                "isolate_network": True,
            }
        )
        batch = slurm(walltime="00:05:00", isolate_network=True)
        headers = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {
                "evaluationExec": f"{sys.executable} train.py",
                "checkPointToSave": "epoch.txt",
                "checkPointInterval": 1,
                "maxPoints": 1,
                "nPointsPerIteration": 1,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
            "files": {"train.py": PAYLOAD},
        }
        task = (await http.post("/api/v1/tasks", json=body, headers=headers)).json()
        stop = asyncio.Event()
        harvester = asyncio.create_task(SecondsHarvester(site, batch=batch).run(stop))
        try:

            async def trained_a_little() -> Path | None:
                for log in root.glob("jobs/*/payload.log"):
                    if last_epoch(log) >= 3 and list(log.parent.glob("checkpoints/ckpt-*")):
                        return log
                return None

            first_log = await wait_for("a few epochs and a snapshot", trained_a_little)
            assert len(batch.submitted) == 1
            scancel = subprocess.run(
                ["scancel", batch.submitted[0]], capture_output=True, text=True, check=False
            )
            assert scancel.returncode == 0, scancel.stderr

            async def ended() -> dict[str, Any] | None:
                view = (await http.get(f"/api/v1/tasks/{task['id']}", headers=headers)).json()
                assert not harvester.done(), harvester
                return view if view["status"] in ("done", "failed", "cancelled") else None

            view = await wait_for("the task to end", ended)
        finally:
            stop.set()
            await harvester
        assert view["status"] == "done", view
        assert len(batch.submitted) == 2  # the retry ran in a new batch job

        jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=headers)).json()
        assert [(j["attempt"], j["status"]) for j in jobs] == [(1, "preempted"), (1, "finished")]
        points = (await http.get(f"/api/v1/tasks/{task['id']}/points", headers=headers)).json()
        assert [(p["attempts"], p["preemptions"]) for p in points] == [(1, 1)]

        # The retry resumed where the cancelled run had got to, and together they ran
        # exactly EPOCHS epochs.
        message = jobs[1]["results"][0]["message"]
        fields = dict(part.split("=") for part in message.split())
        start, ran = int(fields["start"]), int(fields["ran"])
        assert fields["nets"] == "lo", "the payload had a network: it must run offline"
        reached = last_epoch(first_log)
        assert 3 <= start < EPOCHS and reached <= start <= reached + 1
        assert start + ran == EPOCHS
        assert last_epoch(root / "jobs" / jobs[1]["id"] / "payload.log") == EPOCHS
        assert "epoch 1\n" not in (root / "jobs" / jobs[1]["id"] / "payload.log").read_text()

        # The checkpoint the retry resumed from is in the S3 store.
        store = open_artifacts(s3_bucket_url)
        prefix = f"alice/{task['id']}/checkpoints/"
        of_first = re.compile(re.escape(f"{prefix}{jobs[0]['id']}.") + r"\d{6}\.tar\.gz")
        objects = [o for o in await store.list(prefix) if of_first.fullmatch(o.key)]
        assert objects, "no checkpoint of the preempted job in S3"
        newest = await store.get_bytes(objects[-1].key)
        with tarfile.open(fileobj=io.BytesIO(newest)) as tar:
            saved = tar.extractfile("epoch.txt")
            assert saved is not None and int(saved.read()) == start
