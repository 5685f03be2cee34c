"""Checkpoints through the real api: declared and verified uploads, and a preempted job
resumed from its checkpoint without using an attempt. The test plays the site."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.central import Central, FakeSite, central, file_artifacts

pytestmark = [pytest.mark.mongo]

DATA = b"a checkpoint tarball, as far as the api is concerned"
SHA = hashlib.sha256(DATA).hexdigest()


class Site(FakeSite):
    async def post(self, path: str, **body: Any) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self.headers)

    async def checkpoint(
        self,
        job: dict[str, Any],
        seq: int,
        data: bytes,
        *,
        sha: str | None = None,
        size: int | None = None,
    ) -> httpx.Response:
        """Ask for a URL declaring ``data``, PUT it, confirm (possibly lying)."""
        declared = {
            "generation": job["generation"],
            "seq": seq,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        reply = await self.post(f"/edge/v1/jobs/{job['job_id']}/checkpoints", **declared)
        reply.raise_for_status()
        upload = reply.json()
        (await self.http.put(upload["url"], content=data)).raise_for_status()
        confirm = {**declared, "key": upload["key"]}
        if sha is not None:
            confirm["sha256"] = sha
        if size is not None:
            confirm["size"] = size
        return await self.post(f"/edge/v1/jobs/{job['job_id']}/checkpoints/confirm", **confirm)


@pytest.fixture
async def system(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as running:
        yield running


async def _task(http: httpx.AsyncClient, headers: dict[str, str], **config: Any) -> str:
    body = {
        "config": {
            "evaluationExec": f"{sys.executable} train.py",
            "checkPointToSave": "epoch.txt",
            "maxPoints": 1,
            "nPointsPerIteration": 1,
            **config,
        },
        "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
    }
    reply = await http.post("/api/v1/tasks", json=body, headers=headers)
    assert reply.status_code == 201, reply.text
    task_id: str = reply.json()["id"]
    return task_id


async def _lease(site: Site, expected_id: str | None = None) -> dict[str, Any]:
    while True:
        await site.heartbeat(free=1)
        jobs = await site.lease(wait=1)
        if jobs:
            assert len(jobs) == 1
            if expected_id is not None:
                assert jobs[0]["job_id"] == expected_id
            return jobs[0]


async def _until(check: Any, what: str) -> None:
    while not await check():  # waiting for ``what``; the test's timeout bounds it
        await asyncio.sleep(0.1)


async def test_a_preempted_job_resumes_from_its_verified_checkpoint_in_the_same_attempt(
    system: Central,
) -> None:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        site = Site(http, "s1", await system.token("ops", ["edge:s1"]))
        headers = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        task_id = await _task(http, headers, checkPointInterval=2)
        first = await _lease(site)
        assert first["checkpoint_config"] == {
            "save": ["epoch.txt"],
            "load": None,
            "interval": 2,
            "final": False,
        }
        assert first["checkpoint"] is None
        await site.event(first, "started")

        too_big = await site.post(
            f"/edge/v1/jobs/{first['job_id']}/checkpoints",
            generation=first["generation"], seq=1, size=100 * 1024 * 1024 + 1, sha256=SHA,
        )  # fmt: skip
        assert too_big.status_code == 413 and "size" in too_big.json()["detail"]
        wrong_sha = await site.checkpoint(first, 1, DATA, sha=hashlib.sha256(b"x").hexdigest())
        assert wrong_sha.status_code == 422 and "sha256" in wrong_sha.json()["detail"]
        wrong_size = await site.checkpoint(first, 1, DATA, size=len(DATA) + 1)
        assert wrong_size.status_code == 422 and "size" in wrong_size.json()["detail"]
        stored = await site.checkpoint(first, 2, DATA)
        assert stored.status_code == 200 and stored.json() == {"stored": True}
        # An older snapshot confirmed late does not replace the newer one.
        older = await site.checkpoint(first, 1, b"older")
        assert older.json() == {"stored": False}
        stale = dict(first, generation=first["generation"] + 5)
        late = await site.post(
            f"/edge/v1/jobs/{first['job_id']}/checkpoints",
            generation=stale["generation"], seq=3, size=1, sha256=SHA,
        )  # fmt: skip
        assert late.status_code == 409

        reply = await site.event(first, "preempted", reason="node agent received SIGTERM")
        assert reply["accepted"] is True
        again = await site.event(first, "preempted", reason="a duplicate")
        assert again["accepted"] is True and again["detail"] == "already recorded"

        second = await _lease(site, expected_id=f"{first['job_id']}.r1")
        assert second["attempt"] == first["attempt"] == 1
        assert second["checkpoint"]["sha256"] == SHA
        assert second["checkpoint"]["size"] == len(DATA)
        assert (await http.get(second["checkpoint"]["url"])).content == DATA

        # The first job's lease is over: a late report from it changes nothing.
        late_report = await site.finish(first, 0.9)
        assert late_report["accepted"] is False
        late_upload = await site.post(
            f"/edge/v1/jobs/{first['job_id']}/checkpoints",
            generation=first["generation"], seq=9, size=1, sha256=SHA,
        )  # fmt: skip
        assert late_upload.status_code == 409

        await site.event(second, "started")
        assert (await site.finish(second, 0.25))["accepted"] is True

        async def done() -> bool:
            view = (await http.get(f"/api/v1/tasks/{task_id}", headers=headers)).json()
            return bool(view["status"] == "done")

        await _until(done, "the task to finish")
        points = (await http.get(f"/api/v1/tasks/{task_id}/points", headers=headers)).json()
        assert [(p["attempts"], p["preemptions"], p["loss"]) for p in points] == [(1, 1, 0.25)]
        jobs = (await http.get(f"/api/v1/tasks/{task_id}/jobs", headers=headers)).json()
        assert [(j["attempt"], j["status"]) for j in jobs] == [(1, "preempted"), (1, "finished")]
        view = (await http.get(f"/api/v1/tasks/{task_id}", headers=headers)).json()
        assert view["progress"]["jobs"] == 1  # the preempted job is continued, not counted
        artifacts = (await http.get(f"/api/v1/tasks/{task_id}/artifacts", headers=headers)).json()
        checkpoints = [a for a in artifacts if a["kind"] == "checkpoint"]
        assert [(a["size"], a["verified"]) for a in checkpoints] == [(len(DATA), True), (5, True)]


async def test_preemptions_beyond_the_cap_or_without_a_checkpoint_use_attempts(
    system: Central,
) -> None:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        site = Site(http, "s1", await system.token("ops", ["edge:s1"]))
        headers = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        await _task(http, headers, maxPreemptions=1, maxAttempts=3)
        first = await _lease(site)
        await site.event(first, "started")
        assert (await site.event(first, "preempted"))["accepted"] is True
        # No checkpoint was stored: an ordinary failed attempt.
        second = await _lease(site, expected_id=first["job_id"].replace(".a1", ".a2"))
        assert second["attempt"] == 2 and second["checkpoint"] is None
        await site.event(second, "started")
        assert (await site.checkpoint(second, 1, DATA)).json() == {"stored": True}
        await site.event(second, "preempted")
        third = await _lease(site, expected_id=f"{second['job_id']}.r1")
        assert third["attempt"] == 2 and third["checkpoint"]["sha256"] == SHA
        await site.event(third, "started")
        await site.event(third, "preempted")
        # maxPreemptions=1 is spent: this preemption is a failure, the next attempt is 3,
        # and it still resumes from the checkpoint.
        fourth = await _lease(site, expected_id=first["job_id"].replace(".a1", ".a3"))
        assert fourth["attempt"] == 3 and fourth["checkpoint"]["sha256"] == SHA
