"""Tasks say what their jobs need and sites advertise compute classes: the broker sends
jobs only to a class that satisfies them and says why they wait. Central services
(memory store and bus) and two real harvesters running payloads through the local
batch system."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.documents import JobDocument
from edge.harvester.daemon import Harvester
from services.api.jobspec import build_spec
from tests.integration.central import Central, central, file_artifacts
from tests.waiting import until

pytestmark = [pytest.mark.timeout(180)]

EVAL = "import json; json.dump({'loss': 0.25}, open('output.json', 'w'))\n"


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


async def site(system: Central, tmp_path: Path, name: str, classes: list[Any]) -> Harvester:
    config = SiteConfig.model_validate(
        {
            "site": name,
            "api_url": system.api_url,
            "token": await system.token("ops", [f"edge:{name}"]),
            "root": tmp_path / name,
            "slots": 2,
            "poll_interval": 0.2,
            "heartbeat_interval": 0.5,
            "lease_wait_seconds": 0.5,
            "compute_classes": classes,
        }
    )
    return Harvester(config)


async def test_jobs_run_only_on_the_class_that_satisfies_them_and_say_why_they_wait(
    system: Central, tmp_path: Path
) -> None:
    small = await site(system, tmp_path, "small", [{"name": "cpu", "cpus_per_node": 32}])
    big = await site(
        system,
        tmp_path,
        "big",
        [
            {"name": "v100x2", "gpu_model": "V100", "gpus_per_node": 2},
            {
                "name": "a100x4",
                "gpu_model": "A100",
                "gpus_per_node": 4,
                "memory": "512GiB",
                "max_walltime": "24:00:00",
            },
        ],
    )
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {
                "evaluationExec": f"{sys.executable} eval.py",
                "maxPoints": 3,
                "nParallelEvaluation": 2,
                "resources": {"gpus": 4, "gpu_model": "a100", "walltime": "02:00:00"},
            },
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
            "files": {"eval.py": EVAL},
        }
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert reply.status_code == 201, reply.text
        url = f"/api/v1/tasks/{reply.json()['id']}"

        async def waiting() -> str:
            await small.run_once()
            return str((await http.get(url, headers=headers)).json().get("waiting") or "")

        assert await until(waiting) == (
            "needs 4 a100 GPU(s) per node, a walltime of 2:00:00; no live site offers them "
            "(small: class cpu: 0 GPU(s) per node)"
        )

        stop = asyncio.Event()
        loops = [asyncio.create_task(h.run(stop)) for h in (small, big)]

        async def ended() -> dict[str, Any] | None:
            assert not any(t.done() for t in loops), "a harvester stopped"
            view: dict[str, Any] = (await http.get(url, headers=headers)).json()
            return view if view["status"] in ("done", "failed") else None

        try:
            view = await until(ended, every=0.2)
        finally:
            stop.set()
            await asyncio.gather(*loops)
        assert view["status"] == "done", view["reason"]
        assert view["waiting"] == ""
        jobs = (await http.get(f"{url}/jobs", headers=headers)).json()
    assert {(j["site"], j["status"]) for j in jobs} == {("big", "finished")}
    records = await system.ctx.store.jobs.list_for_task(view["id"])
    assert {j.compute_class for j in records} == {"a100x4"}
    assert not list((tmp_path / "small").glob("jobs/task_*"))
    means = await system.ctx.store.runtimes.means([view["id"]])
    assert set(means[view["id"]]) == {("big", "a100x4")}, "run times learnt per class"
    # What is learnt travels with the task's next leases: a late-binding worker orders
    # and fits its jobs by it.
    learnt = means[view["id"]][("big", "a100x4")]
    spec = await build_spec(system.ctx.store, system.ctx.constants, records[0], "amd64")
    assert spec.expected_seconds == pytest.approx(learnt) and learnt > 0
    staged = [
        JobDocument.model_validate_json(p.read_text()).spec
        for p in (tmp_path / "big").glob("jobs/*/job.json")
    ]
    by_job = {s.job_id.split(".")[-2]: s.expected_seconds for s in staged}
    assert by_job["0"] is None and by_job["1"] is None, "nothing learnt at the first leases"
    assert by_job["2"] is not None and by_job["2"] > 0, "the third lease knew the first runs"
    stored = await system.ctx.store.sites.get("big")
    assert stored is not None and [c.name for c in stored.compute_classes] == ["v100x2", "a100x4"]


async def test_a_resource_request_that_cannot_be_read_is_a_422_naming_it(
    system: Central,
) -> None:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
        body = {
            "config": {"evaluationExec": "true", "resources": {"walltime": "2 hours"}},
            "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        }
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
    assert reply.status_code == 422
    detail = reply.json()["detail"][0]
    assert detail["loc"][-2:] == ["resources", "walltime"]
    assert "HH:MM:SS" in detail["msg"]
