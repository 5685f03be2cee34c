"""``POST /edge/v1/sites/{site}/heartbeats``: a scan's job heartbeats in one request to
the real api (memory store and bus), each answered as its own event would be."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.central import Central, FakeSite, central, file_artifacts


@pytest.fixture
async def system(store_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=store_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        yield c


async def test_each_heartbeat_of_a_batch_is_answered_in_order(system: Central) -> None:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        user = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {"evaluationExec": "true", "maxPoints": 2, "nParallelEvaluation": 2},
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        await http.post("/api/v1/tasks", json=body, headers=user)
        site = FakeSite(http, "s1", await system.token("ops", ["edge:s1"]))
        other = FakeSite(http, "s2", await system.token("ops", ["edge:s2"]))
        await site.heartbeat(free=2)
        jobs: list[dict[str, object]] = []
        while len(jobs) < 2:
            jobs += await site.lease(2, wait=0.5)
        beats = [
            {"job_id": jobs[0]["job_id"], "generation": jobs[0]["generation"], "host": "n1"},
            {"job_id": jobs[1]["job_id"], "generation": 99},
            {"job_id": "no-such-job", "generation": 1},
        ]
        reply = await http.post(
            "/edge/v1/sites/s1/heartbeats", json={"beats": beats}, headers=site.headers
        )
        assert reply.status_code == 200, reply.text
        first, stale, unknown = reply.json()["replies"]
        assert (first["accepted"], first["kill"]) == (True, False) and first["lease_expires"]
        assert (stale["accepted"], stale["detail"]) == (False, "lease lost or superseded")
        assert unknown["kill"] and unknown["detail"] == "no job no-such-job at this site"
        foreign = await http.post(
            "/edge/v1/sites/s2/heartbeats", json={"beats": beats[:1]}, headers=other.headers
        )
        assert foreign.json()["replies"][0]["detail"].startswith("no job ")
        record = await system.ctx.store.jobs.get(str(jobs[0]["job_id"]))
        assert record is not None and record.host == "n1" and record.status == "running"
        empty = await http.post(
            "/edge/v1/sites/s1/heartbeats", json={"beats": []}, headers=site.headers
        )
        assert empty.status_code == 422
