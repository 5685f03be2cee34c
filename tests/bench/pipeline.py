"""Central pipeline benchmark: overhead per evaluated point and result-to-next-lease latency.

A no-op site leases each job and reports its result at once, so all measured time is
the central system's: api, steering (Optuna random sampler, to keep sampler cost out),
jobbuilder, broker, bus and database. With nParallelEvaluation 1 and one point per
iteration, every result must travel the whole chain (steering generates the next point,
the job builder defines its job, the broker assigns it) before the next lease.

Prints one JSON line per backend: the embedded default (memory bus) and RabbitMQ, both
on SecantusDB. Run: python tests/bench/pipeline.py [--points 60]
(uses HPO_TEST_MONGO_URL / HPO_TEST_AMQP_URL when set; otherwise starts a SecantusDB and
expects RabbitMQ at 127.0.0.1:5672).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from pymongo import monitoring

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.store.server import start_secantus
from tests.integration.central import FakeSite, central

SPACE = {"x": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}}


class CommandCounter(monitoring.CommandListener):
    """Counts database commands, to say where the central time goes."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


COMMANDS = CommandCounter()
monitoring.register(COMMANDS)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(backend: str, bus_url: str, mongo_url: str, points: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            central(
                mongo_url=f"{mongo_url.rstrip('/')}/bench{uuid.uuid4().hex[:8]}",
                bus_url=bus_url,
                bus_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                artifacts_url=f"file://{tmp}/artifacts",
            ) as system,
            httpx.AsyncClient(base_url=system.api_url, timeout=60) as http,
        ):
            user = await system.token("bench", ["user"])
            site = FakeSite(http, "bench", await system.token("ops", ["edge:bench"]))
            await site.heartbeat(free=1)
            config = {
                "evaluationExec": "true",
                "maxPoints": points,
                "nParallelEvaluation": 1,
                "nPointsPerIteration": 1,
                "steering": {"algorithm": "random", "seed": 1},
            }
            reply = await http.post(
                "/api/v1/tasks",
                json={"config": config, "searchSpace": SPACE},
                headers={"Authorization": f"Bearer {user}"},
            )
            reply.raise_for_status()
            task_id = reply.json()["id"]
            latencies: list[float] = []
            commands_before = COMMANDS.count
            started = time.perf_counter()
            jobs = await site.lease(wait=30)
            for _ in range(points):
                assert jobs, "no job became leasable within 30 s"
                job = jobs[0]
                await site.event(job, "started")
                await site.finish(job, float(job["points"][0]["params"]["x"]))
                sent = time.perf_counter()
                if len(latencies) + 1 == points:
                    break
                jobs = await site.lease(wait=30)
                latencies.append(time.perf_counter() - sent)
            total = time.perf_counter() - started
            commands = COMMANDS.count - commands_before
            while True:
                view = await http.get(
                    f"/api/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {user}"}
                )
                if view.json()["status"] == "done":
                    break
                await asyncio.sleep(0.05)
    return {
        "bench": "pipeline",
        "backend": backend,
        "points": points,
        "overhead_per_point_ms": round(total / points * 1e3, 1),
        "result_to_leasable_p50_ms": round(statistics.median(latencies) * 1e3, 1),
        "result_to_leasable_p99_ms": round(percentile(latencies, 0.99) * 1e3, 1),
        "db_commands_per_point": round(commands / points, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=60)
    args = parser.parse_args()
    amqp = os.environ.get("HPO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    mongo = os.environ.get("HPO_TEST_MONGO_URL")
    server = None
    if not mongo:
        server = start_secantus(Path(tempfile.mkdtemp(prefix="bench-db-")))
        mongo = server.url
    try:
        for backend, bus in (("embedded (memory bus)", "memory://"), ("rabbitmq", amqp)):
            print(json.dumps(await measure(backend, bus, mongo, args.points)), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
