"""RabbitMQ dies mid-task: the api answers 503 with Retry-After, keeps what it wrote,
and the reconcile passes deliver what the lost messages would have triggered.

The services run in-process on a private RabbitMQ node (the test kills it) and the
shared SecantusDB; the harvester's real api client and the ``hpo`` client make the
requests, with their pauses recorded instead of slept.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from client.http import ApiClient
from edge.harvester.api import EdgeApiClient
from shared.edge_api import JobEvent, PointResult
from tests.integration.central import FakeSite, central, file_artifacts

pytestmark = [pytest.mark.rabbitmq, pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(900)]

SPACE = {"x": {"method": "uniform", "dimension": {"low": -1.0, "high": 1.0}}}
RETRY_AFTER = 7  # not a backoff the clients would pick by themselves


async def points_of(http: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> Any:
    return (await http.get(f"/api/v1/tasks/{task_id}/points", headers=headers)).json()


async def test_bus_down_mid_task_is_a_503_and_loses_no_event(
    rabbit: Any,
    mongo_db_url: str,
    bus_prefix: str,
    tmp_path: Path,
) -> None:
    # (the private node is removed with its queues at the end of the module)
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url=rabbit.url,
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
            bus_publish_timeout=1,
            retry_after_seconds=RETRY_AFTER,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=60) as http,
    ):
        # The services have just declared their queues: settled by a clean restart, or
        # the kill below may leave one of them without a leader (deploy/dev/rabbitnode.py).
        await asyncio.to_thread(rabbit.settle)
        user = await system.token("alice", ["user"])
        edge_token = await system.token("ops", ["edge:siteA"])
        headers = {"Authorization": f"Bearer {user}"}
        site = FakeSite(http, "siteA", edge_token)
        body = {
            "config": {"evaluationExec": "true", "maxPoints": 1, "nPointsPerIteration": 1},
            "searchSpace": SPACE,
        }
        task = (await http.post("/api/v1/tasks", json=body, headers=headers)).json()
        # the services reconnect to the restarted node in their own time (aio-pika
        # retries every 5 s): until then a heartbeat is a 503 with Retry-After
        while (
            await http.post(
                "/edge/v1/sites/siteA/heartbeat",
                json={"free_slots": 1, "total_slots": 1},
                headers=site.headers,
            )
        ).status_code == 503:
            await asyncio.sleep(0.2)
        leased: list[dict[str, Any]] = []
        while not leased:
            leased = await site.lease(wait=2)
        job = leased[0]
        await site.event(job, "started", host="node1")

        await asyncio.to_thread(rabbit.kill)

        # A heartbeat needs the bus for its hint: 503, with when to retry.
        reply = await http.post(
            "/edge/v1/sites/siteA/heartbeat",
            json={"free_slots": 1, "total_slots": 1},
            headers=site.headers,
        )
        assert reply.status_code == 503, reply.text
        assert reply.headers["Retry-After"] == str(RETRY_AFTER)
        assert "message bus" in reply.json()["detail"]

        # The harvester's report: 503 first, the write kept; its retry, Retry-After
        # later, is "already recorded".
        pauses: list[float] = []

        async def record(pause: float) -> None:
            pauses.append(pause)

        point = job["points"][0]["point_id"]
        async with EdgeApiClient(
            system.api_url, "siteA", lambda: edge_token, sleep=record
        ) as harvester:
            answer = await harvester.job_event(
                job["job_id"],
                JobEvent(
                    kind="finished",
                    generation=job["generation"],
                    results=[PointResult(point_id=point, loss=0.25)],
                ),
            )
        assert answer.accepted
        assert pauses == [RETRY_AFTER]

        # The job builder's reconcile pass applies the result without any message.
        while (await points_of(http, headers, task["id"]))[0]["status"] != "evaluated":
            await asyncio.sleep(0.2)

        # A submission while the bus is away is accepted: repeating it would make a
        # second task, so its hint is left to the reconcile pass.
        second = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert second.status_code == 201, second.text
        while not await points_of(http, headers, second.json()["id"]):
            await asyncio.sleep(0.2)

        # The hpo client honours Retry-After too: a cancel writes, fails on its hint,
        # and is repeated, which finds it done.
        slept: list[float] = []
        with ApiClient(system.api_url, user, sleep=slept.append) as cli:
            cancelled = await asyncio.to_thread(cli.cancel, second.json()["id"])
        assert cancelled["status"] == "cancelled"
        assert slept == [RETRY_AFTER]

        await asyncio.to_thread(rabbit.start)
        while True:
            view = (await http.get(f"/api/v1/tasks/{task['id']}", headers=headers)).json()
            if view["status"] == "done":
                break
            await asyncio.sleep(0.2)
        assert view["best"]["loss"] == 0.25
