"""A real Prometheus scrapes the central process and the harvester while a small task
runs, and its series say what happened: three points, each failing its first attempt.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from edge.metrics import edge_ops_app
from shared.web import bind, serve
from tests.integration.central import central, file_artifacts
from tests.integration.prometheus import Prometheus, grafana_expressions, prometheus

pytestmark = [pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(300)]

PAYLOAD = """
import json, os, sys
params = json.load(open("input.json"))
marker = os.path.join(sys.argv[1], "failed-%r" % params["x"])
if not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(3)
json.dump({"status": 0, "loss": params["x"] ** 2}, open("output.json", "w"))
"""


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await asyncio.sleep(0.2)


async def settles_at(prom: Prometheus, expected: dict[str, float]) -> None:
    """Wait until every query has its expected value (Prometheus scrapes each second)."""
    seen: dict[str, float | None] = {}

    async def all_match() -> bool:
        for query, _value in expected.items():
            seen[query] = await prom.value(query)
        return all(seen[q] == v for q, v in expected.items())

    try:
        await until(all_match)
    except BaseException:
        print("last values:", seen)
        raise


async def test_prometheus_scrapes_every_process_and_sees_the_task(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "payload.py").write_text(PAYLOAD)
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
                "site": "s1",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:s1"]),
                "root": tmp_path / "edge",
                "slots": 2,
                "poll_interval": 0.2,
                "heartbeat_interval": 0.5,
                "lease_wait_seconds": 0.5,
            }
        )
        harvester = Harvester(site)
        edge_sock = bind("127.0.0.1", 0)
        stop = asyncio.Event()
        edge_listener = asyncio.create_task(
            serve(edge_ops_app(site, harvester.metrics), edge_sock, stop)
        )
        targets = {
            "central": system.ops_url.removeprefix("http://"),
            "edge": f"127.0.0.1:{edge_sock.getsockname()[1]}",
        }
        running = asyncio.create_task(harvester.run(stop))
        try:
            async with prometheus(targets, tmp_path / "prometheus") as prom:

                async def both_up() -> bool:
                    return await prom.targets_up() == {"central": "up", "edge": "up"}

                await until(both_up)
                user = await system.token("alice", ["user"])
                headers = {"Authorization": f"Bearer {user}"}
                body: dict[str, Any] = {
                    "config": {
                        "evaluationExec": f"{sys.executable} payload.py {markers}",
                        "maxPoints": 3,
                        "nParallelEvaluation": 2,
                        "nPointsPerIteration": 3,
                        "steering": {"algorithm": "random", "seed": 1},
                    },
                    "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
                    "files": {"payload.py": PAYLOAD},
                }
                reply = await http.post("/api/v1/tasks", json=body, headers=headers)
                assert reply.status_code == 201, reply.text
                task_id = reply.json()["id"]

                async def done() -> bool:
                    view = await http.get(f"/api/v1/tasks/{task_id}", headers=headers)
                    return bool(view.json()["status"] == "done")

                await until(done)
                await settles_at(
                    prom,
                    {
                        'up{job="central"}': 1,
                        'up{job="edge"}': 1,
                        "hpo_points_evaluated_total": 3,
                        "hpo_points_failed_total": 0,
                        "hpo_point_retries_total": 3,
                        'hpo_jobs_ended_total{state="finished"}': 3,
                        'hpo_jobs_ended_total{state="failed"}': 3,
                        'hpo_job_stage_seconds_count{stage="run"}': 6,
                        'hpo_job_stage_seconds_count{stage="total"}': 6,
                        'hpo_tasks{state="done"}': 1,
                        'hpo_tasks{state="running"}': 0,
                        'hpo_site_slots{site="s1"}': 2,
                        'hpo_edge_slots{site="s1"}': 2,
                        'hpo_edge_jobs{site="s1"}': 0,
                        "hpo_lease_expiries_total": 0,
                        "sum(hpo_bus_errors_total) or vector(0)": 0,
                    },
                )
                scans = await prom.value('hpo_edge_scan_seconds_count{site="s1"}')
                assert scans is not None and scans > 0
                routes = await prom.query(
                    'hpo_http_requests_total{app="api",route="/edge/v1/jobs/{job_id}/events"}'
                )
                assert routes, "the api's requests are counted by route template"
                # the Grafana dashboard's queries are valid PromQL over these series
                dashboard = Path(__file__).parents[2] / "deploy" / "grafana" / "hpo-relay.json"
                answered = [await prom.query(expr) for expr in grafana_expressions(dashboard)]
                assert sum(1 for result in answered if result) >= 15
        finally:
            stop.set()
            await running
            await edge_listener
