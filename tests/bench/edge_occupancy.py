"""Edge GPU-slot occupancy on the 6-GPU Slurm node: late binding against one batch job
per edge job.

The real harvester (product defaults: 2 s scan, 10 s lease long-poll) runs in this
process against the in-process edge api double of the integration tests, which offers
60 jobs at once; each payload sleeps a random 5-15 s (fixed seed). Both modes run the
same jobs on the same cluster, one after the other:

* ``single``: one Slurm job per edge job, ``--gres=gpu:1``, 6 at a time at most;
* ``per_gpu``: late binding, one Slurm job holding the node's 6 GPUs, one payload per
  GPU, the next job waiting in the worker's inbox.

occupancy = busy slot-seconds / (6 x makespan), makespan from the moment the jobs are
offered to the end of the last payload; busy = the payloads' own run times, from the
node agents' status files. Also printed: when the first payload started, and the idle
slot-seconds after the last payload started (the drain, which no scheduler that does
not know the durations avoids). Prints one JSON line per mode.

Run (as root, for the one-node Slurm of the dev infrastructure):
    deploy/dev/infra.py run -- python tests/bench/edge_occupancy.py [--jobs 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.batch import open_batch
from edge.config import SiteConfig
from edge.documents import NodeStatus
from edge.fsproto import JobPaths, read_json
from edge.harvester.daemon import Harvester
from edge.workerproto import WORKERS_DIR, WorkerPaths
from shared.edge_api import JobSpec, PointSpec
from tests.integration.edge.conftest import SITE, TOKEN, FakeEdgeApi, build_app

GPUS = 6
JOB = 'sleep "$1"\necho \'{"status": 0, "loss": 0.0}\' > output.json\n'


def specs(n: int, seed: int, known: bool = False) -> list[JobSpec]:
    """``known``: each job carries its own duration as its expected run time, as the
    central service's learnt means would for jobs of tasks that differ in length."""
    rng = random.Random(seed)
    expires = datetime.fromtimestamp(time.time() + 3600).astimezone()
    durations = [rng.uniform(5, 15) for _ in range(n)]
    return [
        JobSpec(
            job_id=f"job-{i:03d}",
            task_id="bench",
            owner="bench",
            segment="main",
            attempt=1,
            generation=1,
            lease_expires=expires,
            points=[PointSpec(point_id=f"p{i}", index=0, params={})],
            exec=f"sh ./job.sh {seconds:.2f}",
            expected_seconds=round(seconds, 2) if known else None,
            task_files={"job.sh": JOB},
        )
        for i, seconds in enumerate(durations)
    ]


def site(api_url: str, root: Path, layout: str, queue_per_slot: int = 1) -> SiteConfig:
    batch: dict[str, Any] = {"kind": "slurm", "walltime": "00:30:00", "layout": layout}
    batch["gpus_per_node"] = GPUS if layout == "per_gpu" else 1
    return SiteConfig.model_validate(
        {
            "site": SITE,
            "api_url": api_url,
            "token": TOKEN,
            "root": root,
            "slots": GPUS,
            "batch": batch,
            "late_binding": {
                "expected_job_seconds": 60,
                "idle_seconds": 10,
                "queue_per_slot": queue_per_slot,
            },
        }
    )


def measure(root: Path, jobs: list[JobSpec], t0: float) -> dict[str, Any]:
    runs: list[tuple[float, float]] = []
    for spec in jobs:
        status = NodeStatus.model_validate(read_json(JobPaths.under(root, spec.job_id).status))
        point = status.points[0]
        assert point.ended_at is not None and status.state == "finished", status
        runs.append((point.started_at.timestamp(), point.ended_at.timestamp()))
    busy = sum(end - start for start, end in runs)
    makespan = max(end for _, end in runs) - t0
    edges = sorted([(s, 1) for s, _ in runs] + [(e, -1) for _, e in runs])
    last_start = max(start for start, _ in runs)
    concurrent = peak = 0
    drain_idle = 0.0
    for (when, step), (after, _) in zip(edges, [*edges[1:], (edges[-1][0], 0)], strict=True):
        concurrent += step
        peak = max(peak, concurrent)
        if when >= last_start:
            drain_idle += (GPUS - concurrent) * (after - when)
    return {
        "occupancy": round(busy / (GPUS * makespan), 4),
        "makespan_s": round(makespan, 1),
        "first_payload_after_s": round(min(start for start, _ in runs) - t0, 1),
        "busy_slot_s": round(busy, 1),
        "drain_idle_slot_s": round(drain_idle, 1),
        "max_concurrent_payloads": peak,
        "occupancy_of_concurrent_slots": round(busy / (peak * makespan), 4),
    }


async def run_mode(
    api_url: str,
    state: FakeEdgeApi,
    layout: str,
    jobs: list[JobSpec],
    keep: bool = False,
    queue_per_slot: int = 1,
) -> None:
    root = Path(tempfile.mkdtemp(prefix=f"hpo-occupancy-{layout}-"))
    config = site(api_url, root, layout, queue_per_slot)
    harvester = Harvester(config)
    batch = open_batch(config.batch)
    stop = asyncio.Event()
    t0 = time.time()
    for spec in jobs:
        state.offer(spec)
    task = asyncio.create_task(harvester.run(stop))
    try:
        while not all(state.events_of(s.job_id, "finished") for s in jobs):
            if task.done():
                task.result()
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        for worker in (root / WORKERS_DIR).glob("w-*"):
            record = WorkerPaths(worker).read_record()
            if record is not None and record.batch_id:
                batch.cancel(record.batch_id)
    line = {
        "bench": "edge_occupancy",
        "mode": layout,
        "jobs": len(jobs),
        "known_durations": jobs[0].expected_seconds is not None,
        "queue_per_slot": queue_per_slot,
        **measure(root, jobs, t0),
    }
    if keep:
        line["root"] = str(root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    line["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, one-node Slurm, 6 fake GPUs"
    print(json.dumps(line), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--modes", default="per_gpu,single")
    parser.add_argument("--keep", action="store_true", help="keep the edge roots (timelines)")
    parser.add_argument("--queue-per-slot", type=int, default=1, help="[late_binding]")
    parser.add_argument(
        "--known-durations",
        action="store_true",
        help="give each job its duration as expected_seconds (longest-first late binding)",
    )
    args = parser.parse_args()
    conf = os.environ.get("HPO_TEST_SLURM_CONF") or os.environ.get("SLURM_CONF")
    if not conf:
        sys.exit("no Slurm: run under `deploy/dev/infra.py run -- ...` as root")
    os.environ["SLURM_CONF"] = conf
    state = FakeEdgeApi()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    state.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(build_app(state), lifespan="off", log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        for n, layout in enumerate(args.modes.split(",")):
            jobs = specs(args.jobs, args.seed, args.known_durations)
            for spec in jobs:  # same durations, distinct ids per mode
                spec.job_id = f"{layout}-{n}-{spec.job_id}"
            await run_mode(state.base_url, state, layout, jobs, args.keep, args.queue_per_slot)
    finally:
        server.should_exit = True
        await serving


if __name__ == "__main__":
    asyncio.run(main())
