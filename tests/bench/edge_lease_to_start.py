"""Edge benchmark: latency from a lease reply to the payload process starting on the node.

The real harvester (one slot, so jobs never wait for each other) leases jobs from a
test double of the edge api (``tests/integration/edge/conftest.py``, served by uvicorn
in this process), stages each job, submits it through the batch adapter, and the real
node agent starts the payload through the ``process`` runtime. The payload's first
command writes the time (``date +%s.%N``); the lease time is taken when the harvester's
client has the lease reply. Both clocks are this machine's.

Prints one JSON line per batch system: ``local`` always, and the real Slurm when
``HPO_TEST_SLURM_CONF`` names a running cluster's slurm.conf (``deploy/dev/infra.py``
starts one when run as root). Run: python tests/bench/edge_lease_to_start.py [--jobs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.batch import BatchSystem, LocalBatchConfig, SlurmBatchConfig, open_batch
from edge.config import SiteConfig
from edge.documents import HarvesterRecord
from edge.fsproto import JobPaths
from edge.harvester.api import EdgeApiClient
from edge.harvester.daemon import Harvester
from shared.edge_api import JobSpec, LeaseReply, LeaseRequest, PointSpec
from tests.integration.edge.conftest import SITE, TOKEN, FakeEdgeApi, build_app

PAYLOAD = 'date +%s.%N > "$PWD/started_at"; printf \'{"status": 0, "loss": 0}\' > output.json'


class TimedClient(EdgeApiClient):
    """The harvester's real client, noting when each job's lease reply arrived."""

    leased_at: dict[str, float]

    async def lease(self, request: LeaseRequest) -> LeaseReply:
        reply = await super().lease(request)
        now = time.time()
        for spec in reply.jobs:
            self.leased_at[spec.job_id] = now
        return reply


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spec(n: int) -> JobSpec:
    return JobSpec(
        job_id=f"bench-{n}",
        task_id="task-1",
        owner="bench",
        segment="main",
        attempt=1,
        generation=1,
        lease_expires=datetime.now(UTC) + timedelta(minutes=10),
        points=[PointSpec(point_id=f"p{n}", index=0, params={"x": n})],
        exec=PAYLOAD,
    )


def payload_started(paths: JobPaths) -> float:
    found = sorted(paths.dir.rglob("started_at"))
    if not found:
        raise RuntimeError(f"payload of {paths.job_id} never started; see {paths.agent_log}")
    return float(found[0].read_text())


async def measure(kind: str, batch: BatchSystem, jobs: int) -> dict[str, Any]:
    state = FakeEdgeApi()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    state.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(build_app(state), lifespan="off", log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        config = SiteConfig(
            site=SITE,
            api_url=state.base_url,
            token=TOKEN,
            root=Path(tmp) / "root",
            slots=1,
            poll_interval=0.5,
            heartbeat_interval=2.0,
            lease_wait_seconds=1.0,
        )
        client = TimedClient(config.base_url, SITE, config.api_token)
        client.leased_at = {}
        harvester = Harvester(config, client, batch)
        specs = [spec(n) for n in range(jobs)]
        for item in specs:
            state.offer(item)
        stop = asyncio.Event()
        running = asyncio.create_task(harvester.run(stop))
        deadline = time.monotonic() + 60 * jobs
        while len([j for j, e in state.events if e.kind in ("finished", "failed")]) < jobs:
            if running.done() or time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: the jobs did not all end")
            await asyncio.sleep(0.1)
        stop.set()
        await running
        failed = [j for j, e in state.events if e.kind == "failed"]
        if failed:
            raise RuntimeError(f"{kind}: jobs failed: {failed[:3]}")
        to_start, to_submit = [], []
        for item in specs:
            paths = JobPaths.under(config.root, item.job_id)
            leased = client.leased_at[item.job_id]
            to_start.append(payload_started(paths) - leased)
            record = HarvesterRecord.model_validate_json(paths.harvester.read_text())
            assert record.submitted_at is not None
            to_submit.append(record.submitted_at.timestamp() - leased)
    server.should_exit = True
    await serving
    return {
        "bench": "edge_lease_to_start",
        "batch": kind,
        "jobs": jobs,
        "lease_to_submitted_p50_ms": round(statistics.median(to_submit) * 1e3, 1),
        "lease_to_payload_start_p50_ms": round(statistics.median(to_start) * 1e3, 1),
        "lease_to_payload_start_p99_ms": round(percentile(to_start, 0.99) * 1e3, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    # The api test double has no held-leases endpoint; the harvester's warning is noise.
    logging.getLogger("edge.harvester.daemon").setLevel(logging.ERROR)
    batches: list[tuple[str, BatchSystem]] = [("local", open_batch(LocalBatchConfig()))]
    conf = os.environ.get("HPO_TEST_SLURM_CONF")
    if conf:
        os.environ["SLURM_CONF"] = conf
        batches.append(("slurm", open_batch(SlurmBatchConfig(walltime="00:10:00"))))
    else:
        print("HPO_TEST_SLURM_CONF is not set: measuring the local batch only", file=sys.stderr)
    for kind, batch in batches:
        print(json.dumps(await measure(kind, batch, args.jobs)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
