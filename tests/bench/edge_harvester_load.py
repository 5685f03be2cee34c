"""Edge benchmark: the harvester's memory and CPU with 1,000 jobs in flight.

The real harvester (product defaults: scan every 2 s, job heartbeats relayed every 10 s)
leases 1,000 jobs from a test double of the edge api and stages them on a local
directory. Two things are stand-ins, each in **its own process** so that their cost is
not counted as the harvester's:

* the api: ``tests/integration/edge/conftest.py``'s test double, served by uvicorn;
* the node agents: one process touches every job's ``heartbeat`` every 10 s and writes
  a ``running`` status once, as 1,000 live agents would.

The batch port is a cheap in-process fake (submit returns an id, poll says "running"):
this measures the harvester, not ``squeue``; a real scheduler adds one poll command per
scan. After all jobs are started, the harvester runs for ``--seconds``; the figures
are the process's CPU time (user + system, all threads) per scan cycle over that
window, its resident memory, and the wall time of one scan.

Then every job ends at once (the agents' stand-in writes each job's ``output.json``,
payload log and a ``finished`` status in one sweep) and the bench measures how the
harvester reports them: the wall time until the last is reported, the longest scan,
its CPU, and the requests it sent, by endpoint (counted in the harvester's own http
client).

Run: python tests/bench/edge_harvester_load.py [--jobs 1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx

from edge.batch import BatchState
from edge.batch.options import ClassBatchOptions
from edge.config import SiteConfig
from edge.documents import NodeStatus, PointRun
from edge.fsproto import JobPaths, jobs_root, touch, write_json_atomic
from edge.harvester.api import EdgeApiClient
from edge.harvester.daemon import Harvester
from shared.edge_api import JobSpec, PointSpec
from tests.integration.edge.conftest import SITE, TOKEN, FakeEdgeApi, build_app

HEARTBEAT_INTERVAL = 10.0
POLL_INTERVAL = 2.0


class InProcessBatch:
    """A batch port that costs nothing: every submitted job is "running"."""

    kind = "fake"

    def submit(self, job_dir: Path, options: ClassBatchOptions | None = None) -> str:
        return f"fake-{job_dir.name}"

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        return dict.fromkeys(batch_ids, "running")

    def cancel(self, batch_id: str) -> None:
        pass


def spec(n: int) -> JobSpec:
    return JobSpec(
        job_id=f"load-{n:04d}",
        task_id="task-1",
        owner="bench",
        segment="main",
        attempt=1,
        generation=1,
        lease_expires=datetime.now(UTC) + timedelta(hours=1),
        points=[PointSpec(point_id=f"p{n}", index=0, params={"x": n, "lr": 0.01})],
        exec="sh ./train.sh",
        task_files={"train.sh": "python train.py --epochs 10\n"},
    )


def serve_api(port: int, jobs: int) -> None:
    """The api stand-in's process."""
    import uvicorn

    state = FakeEdgeApi(base_url=f"http://127.0.0.1:{port}")
    for n in range(jobs):
        state.offer(spec(n))
    uvicorn.run(build_app(state), host="127.0.0.1", port=port, log_level="warning")


def end_flag(root: Path) -> Path:
    return root.parent / "end-all"


def end_job(paths: JobPaths, started_at: datetime) -> None:
    """What a node agent leaves when its payload has finished."""
    n = int(paths.job_id.rsplit("-", 1)[1])
    out = paths.dir / "points" / "0" / "output.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"status": 0, "loss": n / 1000}))
    log = f"epoch 1/1 of {paths.job_id}: loss {n / 1000}\n".encode()
    paths.payload_log.write_bytes(log)
    now = datetime.now(UTC)
    run = PointRun(
        index=0,
        point_id=f"p{n}",
        exit_code=0,
        started_at=started_at,
        ended_at=now,
        log_end=len(log),
    )
    status = NodeStatus(
        state="finished",
        host="node-1",
        started_at=started_at,
        ended_at=now,
        exit_code=0,
        points=[run],
    )
    write_json_atomic(paths.status, status.model_dump(mode="json"))


def run_agents(root: Path) -> None:
    """The node agents' stand-in process: live heartbeats for every staged job; once
    the end flag exists, every job ends in one sweep."""
    started: dict[str, datetime] = {}
    ended = False
    next_beat = 0.0
    while True:
        if not ended and end_flag(root).exists():
            for name, at in started.items():
                end_job(JobPaths(jobs_root(root) / name), at)
            ended = True
        if time.monotonic() >= next_beat:
            next_beat = time.monotonic() + HEARTBEAT_INTERVAL
            directory = jobs_root(root)
            entries = list(directory.iterdir()) if directory.is_dir() else []
            for entry in entries:
                if entry.name.startswith(".") or not (entry / "job.json").exists():
                    continue
                paths = JobPaths(entry)
                touch(paths.heartbeat)
                if entry.name not in started and not ended:
                    at = datetime.now(UTC)
                    status = NodeStatus(state="running", host="node-1", started_at=at)
                    write_json_atomic(paths.status, status.model_dump(mode="json"))
                    started[entry.name] = at
        time.sleep(0.1)


class CountingTransport(httpx.AsyncBaseTransport):
    """The harvester's http transport, counting the requests it sends by endpoint."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.counts: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/upload/"):
            path = "/upload/{key}"
        self.counts[f"{request.method} {re.sub(r'/jobs/[^/]+', '/jobs/{id}', path)}"] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_port(port: int) -> None:
    for _ in range(300):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the api stand-in did not listen on port {port}")


async def measure(jobs: int, seconds: float) -> dict[str, Any]:
    port = free_port()
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        root = Path(tmp) / "root"
        helpers = [
            subprocess.Popen([sys.executable, script, "serve-api", str(port), str(jobs)]),
            subprocess.Popen([sys.executable, script, "agents", str(root)]),
        ]
        try:
            await wait_for_port(port)
            return await drive(root, port, jobs, seconds)
        finally:
            for helper in helpers:
                helper.terminate()
                helper.wait(30)


async def drive(root: Path, port: int, jobs: int, seconds: float) -> dict[str, Any]:
    config = SiteConfig(
        site=SITE,
        api_url=f"http://127.0.0.1:{port}",
        token=TOKEN,
        root=root,
        slots=jobs,
        poll_interval=POLL_INTERVAL,
        heartbeat_interval=HEARTBEAT_INTERVAL,
    )
    rss_before = rss_mib()
    transport = CountingTransport()
    client = EdgeApiClient(config.base_url, SITE, config.api_token, transport=transport)
    harvester = Harvester(config, client, InProcessBatch())
    scans: list[float] = []
    real_scan = harvester.scan

    async def timed_scan() -> None:
        began = time.perf_counter()
        await real_scan()
        scans.append(time.perf_counter() - began)

    harvester.scan = timed_scan  # type: ignore[method-assign]
    stop = asyncio.Event()
    cpu_start, began = cpu_seconds(), time.monotonic()
    running = asyncio.create_task(harvester.run(stop))
    while not (
        len(harvester.jobs) == jobs
        and all(j.record.started_reported for j in harvester.jobs.values())
    ):
        if running.done() or time.monotonic() - began > 600:
            raise RuntimeError(f"only {len(harvester.jobs)} of {jobs} jobs were started")
        await asyncio.sleep(0.2)
    ramp_cpu, ramp_wall = cpu_seconds() - cpu_start, time.monotonic() - began
    await asyncio.sleep(2 * HEARTBEAT_INTERVAL)  # let the heartbeat relays reach steady state
    cpu0, scans0, rss_peak = cpu_seconds(), len(scans), rss_mib()
    window_start = time.monotonic()
    while time.monotonic() - window_start < seconds:
        await asyncio.sleep(1.0)
        rss_peak = max(rss_peak, rss_mib())
    cpu, cycles = cpu_seconds() - cpu0, len(scans) - scans0
    window = time.monotonic() - window_start
    lost = len(harvester.jobs)
    if lost != jobs:
        raise RuntimeError(f"{jobs - lost} jobs were reported (lost?) during the window")
    steady = scans[scans0:]

    # Every job ends at once: how are they reported?
    requests_before = Counter(transport.counts)
    scans_before, cpu_end0 = len(scans), cpu_seconds()
    end_flag(root).touch()
    ended_at = time.monotonic()
    while harvester.jobs:
        if running.done() or time.monotonic() - ended_at > 600:
            raise RuntimeError(f"{len(harvester.jobs)} of {jobs} jobs still not reported")
        await asyncio.sleep(0.05)
    end_wall = time.monotonic() - ended_at
    end_cpu = cpu_seconds() - cpu_end0
    end_scans = scans[scans_before:]
    sent = transport.counts - requests_before
    stop.set()
    await running
    reported = sum(1 for p in jobs_root(root).glob("*/reported.json"))
    return {
        "bench": "edge_harvester_load",
        "jobs_in_flight": jobs,
        "poll_interval_s": POLL_INTERVAL,
        "heartbeat_interval_s": HEARTBEAT_INTERVAL,
        "window_s": round(window, 1),
        "scan_cycles": cycles,
        "cpu_ms_per_cycle": round(cpu / cycles * 1e3, 1),
        "cpu_share_of_one_core": round(cpu / window, 3),
        "scan_wall_p50_ms": round(statistics.median(steady) * 1e3, 1),
        "scan_wall_max_ms": round(max(steady) * 1e3, 1),
        "rss_mib": round(rss_mib(), 1),
        "rss_peak_mib": round(rss_peak, 1),
        "rss_before_harvester_mib": round(rss_before, 1),
        "ramp_lease_stage_start_s": round(ramp_wall, 1),
        "ramp_cpu_s": round(ramp_cpu, 1),
        "end_all_reported_s": round(end_wall, 2),
        "end_scans": len(end_scans),
        "end_scan_wall_max_ms": round(max(end_scans) * 1e3, 1) if end_scans else None,
        "end_cpu_s": round(end_cpu, 2),
        "end_requests": sum(sent.values()),
        "end_requests_by_endpoint": dict(sorted(sent.items())),
        "end_reported_json": reported,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }


def main() -> None:
    if sys.argv[1:2] == ["serve-api"]:
        serve_api(int(sys.argv[2]), int(sys.argv[3]))
        return
    if sys.argv[1:2] == ["agents"]:
        with contextlib.suppress(KeyboardInterrupt):
            run_agents(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    # The api test double has no held-leases endpoint; the harvester's warning is noise.
    logging.getLogger("edge.harvester.daemon").setLevel(logging.ERROR)
    print(json.dumps(asyncio.run(measure(args.jobs, args.seconds))), flush=True)


if __name__ == "__main__":
    main()
