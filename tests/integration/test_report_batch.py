"""``POST /edge/v1/sites/{site}/reports``: the terminal events of a harvester's scan in
one request to the real api (SecantusDB store, memory bus), each answered as its own
``/jobs/{id}/events`` would be: results stored, a repeat "already recorded", a stale
generation or another site's job refused with a kill, the run time learnt."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.domain.models import JobStatus
from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.waiting import until


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


def report(job: dict[str, Any], kind: str, **fields: Any) -> dict[str, Any]:
    return {"job_id": job["job_id"], "kind": kind, "generation": job["generation"], **fields}


async def test_each_report_of_a_batch_is_answered_in_order_as_its_own_event(
    system: Central,
) -> None:
    store = system.ctx.store
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        user = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {
                "evaluationExec": "true",
                "maxPoints": 4,
                "nParallelEvaluation": 4,
                "nPointsPerIteration": 4,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        created = await http.post("/api/v1/tasks", json=body, headers=user)
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        site = FakeSite(http, "s1", await system.token("ops", ["edge:s1"]))
        other = FakeSite(http, "s2", await system.token("ops", ["edge:s2"]))
        beat = await http.post(
            "/edge/v1/sites/s1/heartbeat",
            json={"free_slots": 4, "total_slots": 4, "compute_classes": [{"name": "cpu"}]},
            headers=site.headers,
        )
        assert beat.status_code == 200, beat.text
        jobs: list[dict[str, Any]] = []
        while len(jobs) < 4:
            jobs += await site.lease(4, wait=0.5)
        for job in jobs:
            assert (await site.event(job, "started", host="n1"))["accepted"]
        done, failed, preempted, stale = jobs
        point = done["points"][0]["point_id"]
        reports = [
            report(done, "finished", host="n1", results=[{"point_id": point, "loss": 0.5}]),
            report(failed, "failed", reason="the payload exited with 3"),
            report(preempted, "preempted", reason="walltime"),
            {**report(stale, "finished"), "generation": stale["generation"] + 7},
            {"job_id": "no-such-job", "kind": "failed", "generation": 1},
        ]
        reply = await http.post(
            "/edge/v1/sites/s1/reports", json={"reports": reports}, headers=site.headers
        )
        assert reply.status_code == 200, reply.text
        answers = [(r["accepted"], r["kill"], r["detail"]) for r in reply.json()["replies"]]
        assert answers == [
            (True, False, ""),
            (True, False, ""),
            (True, False, ""),
            (False, True, "lease lost or superseded"),
            (False, True, "no job no-such-job at this site"),
        ]

        async def status_of(job: dict[str, Any]) -> Any:
            record = await store.jobs.get(str(job["job_id"]))
            assert record is not None
            return record

        finished = await status_of(done)
        assert finished.status is JobStatus.FINISHED
        assert [r.loss for r in finished.results] == [0.5]
        assert (await status_of(failed)).status is JobStatus.FAILED
        assert (await status_of(failed)).reason == "the payload exited with 3"
        assert (await status_of(preempted)).status is JobStatus.PREEMPTED
        assert (await status_of(stale)).status is JobStatus.RUNNING
        means = await store.runtimes.means([task_id])
        assert set(means[task_id]) == {("s1", "cpu")}, "the run time observed once"

        # The same reports again (a harvester that died before writing reported.json):
        # each is "already recorded", nothing changes.
        again = await http.post(
            "/edge/v1/sites/s1/reports", json={"reports": reports[:3]}, headers=site.headers
        )
        assert [(r["accepted"], r["detail"]) for r in again.json()["replies"]] == [
            (True, "already recorded")
        ] * 3
        assert [r.loss for r in (await status_of(done)).results] == [0.5]
        contradicting = await http.post(
            "/edge/v1/sites/s1/reports",
            json={"reports": [report(done, "failed")]},
            headers=site.headers,
        )
        assert contradicting.json()["replies"][0]["detail"] == "lease lost or superseded"

        # Another site sees none of s1's jobs, and cannot post for s1.
        foreign = await http.post(
            "/edge/v1/sites/s2/reports", json={"reports": [reports[3]]}, headers=other.headers
        )
        assert foreign.json()["replies"][0]["detail"] == f"no job {stale['job_id']} at this site"
        forbidden = await http.post(
            "/edge/v1/sites/s1/reports", json={"reports": [reports[3]]}, headers=other.headers
        )
        assert forbidden.status_code == 403
        assert (await status_of(stale)).status is JobStatus.RUNNING

        # Bad bodies: a 422 naming the field.
        empty = await http.post(
            "/edge/v1/sites/s1/reports", json={"reports": []}, headers=site.headers
        )
        assert empty.status_code == 422 and "reports" in empty.text
        beat_kind = await http.post(
            "/edge/v1/sites/s1/reports",
            json={"reports": [report(stale, "heartbeat")]},
            headers=site.headers,
        )
        assert beat_kind.status_code == 422 and "kind" in beat_kind.text


async def test_artifact_urls_and_confirms_of_a_scan_go_in_one_request_each(
    system: Central,
) -> None:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        user = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {"evaluationExec": "true", "maxPoints": 2, "nParallelEvaluation": 2},
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        assert (await http.post("/api/v1/tasks", json=body, headers=user)).status_code == 201
        site = FakeSite(http, "s1", await system.token("ops", ["edge:s1"]))
        await site.heartbeat(free=2)
        jobs: list[dict[str, Any]] = []
        while len(jobs) < 2:
            jobs += await site.lease(2, wait=0.5)
        good, stale = jobs
        asked = [
            {"job_id": good["job_id"], "generation": good["generation"], "kinds": ["log", "meta"]},
            {"job_id": stale["job_id"], "generation": stale["generation"] + 1, "kinds": ["log"]},
            {"job_id": "no-such-job", "generation": 1, "kinds": ["log"]},
        ]
        reply = await http.post(
            "/edge/v1/sites/s1/artifacts", json={"jobs": asked}, headers=site.headers
        )
        assert reply.status_code == 200, reply.text
        urls, refused, unknown = reply.json()["replies"]
        single = await http.post(
            f"/edge/v1/jobs/{good['job_id']}/artifacts",
            json={"generation": good["generation"], "kinds": ["log", "meta"]},
            headers=site.headers,
        )
        assert [(u["kind"], u["key"]) for u in urls["uploads"]] == [
            (u["kind"], u["key"]) for u in single.json()["uploads"]
        ], "the keys the single call gives"
        assert (refused["uploads"], refused["detail"]) == ([], "lease lost or superseded")
        assert unknown["detail"] == "no job no-such-job at this site"

        log_key = urls["uploads"][0]["key"]
        digest = "0" * 64
        confirms = [
            {**asked[0], "kinds": None, "kind": "log", "key": log_key, "size": 3, "sha256": digest},
            {
                **asked[0],
                "kinds": None,
                "kind": "meta",
                "key": log_key,
                "size": 3,
                "sha256": digest,
            },
            {**asked[1], "kinds": None, "kind": "log", "key": log_key, "size": 3, "sha256": digest},
        ]
        for confirm in confirms:
            del confirm["kinds"]
        reply = await http.post(
            "/edge/v1/sites/s1/artifacts/confirm",
            json={"confirms": confirms},
            headers=site.headers,
        )
        assert reply.status_code == 200, reply.text
        answers = [(a["artifact_id"], a["detail"]) for a in reply.json()["replies"]]
        assert answers == [
            (f"{good['job_id']}.log", ""),
            (None, "key does not belong to this job"),
            (None, "lease lost or superseded"),
        ]
        stored = await system.ctx.store.artifacts.get(f"{good['job_id']}.log")
        assert stored is not None and stored.key == log_key and stored.size == 3
        assert await system.ctx.store.artifacts.get(f"{good['job_id']}.meta") is None
        empty = await http.post(
            "/edge/v1/sites/s1/artifacts/confirm", json={"confirms": []}, headers=site.headers
        )
        assert empty.status_code == 422 and "confirms" in empty.text


class Crash(BaseException):
    """The harvester killed where it is raised (nothing after it runs)."""


async def test_a_harvester_killed_after_the_batch_reply_reports_again_counting_nothing_twice(
    system: Central, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge.harvester.report as report_module
    from edge.config import SiteConfig
    from edge.documents import ReportRecord
    from edge.fsproto import JobPaths
    from edge.harvester.daemon import Harvester

    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        user = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {
                "evaluationExec": f'{sys.executable} -c "import json; '
                "json.dump({'loss': 0.5}, open('output.json', 'w'))\"",
                "maxPoints": 3,
                "nPointsPerIteration": 3,
                "nParallelEvaluation": 3,
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        task = (await http.post("/api/v1/tasks", json=body, headers=user)).json()
        site = SiteConfig.model_validate(
            {
                "site": "s1",
                "api_url": system.api_url,
                "token": await system.token("ops", ["edge:s1"]),
                "root": tmp_path / "edge",
                "slots": 3,
                "poll_interval": 0.2,
                "heartbeat_interval": 1,
                "lease_wait_seconds": 0.5,
            }
        )
        first = Harvester(site)
        first.load()
        await first.heartbeat_site()
        while len(first.jobs) < 3:  # leased and started, with no scan to report them
            await first.lease_once(0.5)

        async def all_ended() -> bool:
            statuses = [j.read_status() for j in first.jobs.values()]
            return all(s is not None and s.terminal for s in statuses)

        await until(all_ended)
        job_ids = sorted(first.jobs)

        def crash(*args: object) -> None:
            raise Crash

        with monkeypatch.context() as patch:
            patch.setattr(report_module, "write_json_atomic", crash)
            with pytest.raises(Crash):
                await first.scan()
        await first.aclose()
        for job_id in job_ids:
            record = await system.ctx.store.jobs.get(job_id)
            assert record is not None and record.status is JobStatus.FINISHED, "recorded"
            assert not JobPaths.under(site.root, job_id).reported.exists()

        restarted = Harvester(site)
        restarted.load()
        assert sorted(restarted.jobs) == job_ids
        await restarted.scan()
        await restarted.aclose()
        for job_id in job_ids:
            path = JobPaths.under(site.root, job_id).reported
            record = ReportRecord.model_validate_json(path.read_text())
            assert (record.accepted, record.detail) == (True, "already recorded")

        async def done() -> dict[str, Any] | None:
            view: dict[str, Any] = (
                await http.get(f"/api/v1/tasks/{task['id']}", headers=user)
            ).json()
            return view if view["status"] in ("done", "failed") else None

        assert (await until(done))["status"] == "done"
        jobs = (await http.get(f"/api/v1/tasks/{task['id']}/jobs", headers=user)).json()
        assert sorted((j["id"], j["attempt"], j["status"]) for j in jobs) == [
            (job_id, 1, "finished") for job_id in job_ids
        ], "no job retried, none added"
        points = await system.ctx.store.points.list_for_task(task["id"])
        assert len(points) == 3 and all(p.loss == 0.5 for p in points)
