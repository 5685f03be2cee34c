"""Training datasets end to end: ``hpo dataset upload`` (the CLI in its own process) into
the real api and artifact store, staged once per site by a real harvester into its
dataset cache, read by payloads under ``unshare -n`` (no network at all), and a
corrupted cache file found and downloaded again."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.config import SiteConfig
from edge.harvester.daemon import Harvester
from shared.domain.datasets import part_key
from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.integration.test_cli_artifacts import hpo
from tests.waiting import until

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(240)]

PART = 100_000
"""Bytes per stored part in these tests, so a file of 250 kB travels in three parts."""

EVAL = """\
import hashlib, json, socket, sys
expected = json.load(open("expected.json"))
paths = json.load(open("input_ds.json"))
seen = {p.rsplit("/", 1)[-1]: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    online = True
except OSError:
    online = False
ok = seen == expected and not online and sys.argv[2] == ",".join(paths)
message = "" if ok else f"saw {seen}, online {online}, IN_DATA {sys.argv[2]!r}"
json.dump({"status": 0 if ok else 1, "loss": 0.5, "message": message}, open("output.json", "w"))
"""


def dataset_files(directory: Path) -> dict[str, bytes]:
    """Binary content: every byte value, NULs, and a file over several parts."""
    files = {
        "weights.bin": bytes(range(256)) * 1000,
        "labels.npy": b"\x93NUMPY\x01\x00" + bytes(1000) + os.urandom(5000),
    }
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


@pytest.fixture
async def system(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
        dataset_part_bytes=PART,
    ) as c:
        yield c


async def harvester(system: Central, tmp_path: Path, name: str, **extra: Any) -> Harvester:
    config = SiteConfig.model_validate(
        {
            "site": name,
            "api_url": system.api_url,
            "token": await system.token("ops", [f"edge:{name}"]),
            "root": tmp_path / name,
            "slots": 4,
            "poll_interval": 0.2,
            "heartbeat_interval": 0.5,
            "lease_wait_seconds": 0.5,
            "isolate_network": True,
            **extra,
        }
    )
    return Harvester(config)


async def run_task(
    system: Central, site: Harvester, headers: dict[str, str], config: dict[str, Any], files: Any
) -> dict[str, Any]:
    body = {
        "config": {
            "evaluationExec": f"{sys.executable} eval.py {system.api_url.rsplit(':', 1)[1]} "
            "%IN_DATA",
            **config,
        },
        "searchSpace": {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}},
        "files": {"eval.py": EVAL, "expected.json": json.dumps(files)},
    }
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert reply.status_code == 201, reply.text
        url = f"/api/v1/tasks/{reply.json()['id']}"
        stop = asyncio.Event()
        running = asyncio.create_task(site.run(stop))

        async def ended() -> dict[str, Any] | None:
            assert not running.done(), "the harvester stopped"
            view: dict[str, Any] = (await http.get(url, headers=headers)).json()
            return view if view["status"] in ("done", "failed", "cancelled") else None

        try:
            view = await until(ended, every=0.2)
        finally:
            stop.set()
            await running
        points = (await http.get(f"{url}/points", headers=headers)).json()
    assert view["status"] == "done", (view["reason"], [p.get("error") for p in points])
    assert {p["status"] for p in points} == {"evaluated"}, [p.get("error") for p in points]
    return view


async def test_a_binary_dataset_is_staged_once_for_many_jobs_and_read_offline(
    system: Central, tmp_path: Path
) -> None:
    token = await system.token("alice", ["user"])
    headers = {"Authorization": f"Bearer {token}"}
    content = dataset_files(tmp_path / "mnist")
    digests = {n: hashlib.sha256(d).hexdigest() for n, d in content.items()}

    code, out = await hpo(system, token, tmp_path, "dataset", "upload", "user.alice.mnist", "mnist")
    assert code == 0, out
    assert "ready: 2 file(s)" in out
    code, out = await hpo(system, token, tmp_path, "dataset", "ls")
    assert code == 0 and "user.alice.mnist" in out and "ready" in out, out
    stored = await system.ctx.artifacts.list("alice/datasets/user.alice.mnist/")
    assert len(stored) == 3 + 1, "256 kB in parts of 100 kB, and one part for the small file"

    site = await harvester(system, tmp_path, "hpc")
    config = {"trainingDS": "user.alice.mnist", "maxPoints": 4, "nParallelEvaluation": 4}
    await run_task(system, site, headers, config, digests)
    cache = site.datasets.cache
    assert cache.downloads == 2, "each file downloaded once for the four jobs"
    objects = sorted(p.name for p in cache.objects.iterdir() if not p.name.startswith("."))
    assert objects == sorted(digests.values())
    jobs = sorted((tmp_path / "hpc" / "jobs").glob("task_*"))
    assert len(jobs) == 4
    listed = json.loads((jobs[0] / "work" / "input_ds.json").read_text())
    assert listed == [f"datasets/user.alice.mnist/{n}" for n in sorted(content)]
    assert not (jobs[0] / "work" / listed[0]).exists(), "links removed once reported"
    assert all(cache.path_for(d).stat().st_nlink == 1 for d in digests.values())

    # A cached file corrupted in place is found by the restarted harvester and
    # downloaded again; the intact one is checked and kept.
    victim = cache.path_for(digests["weights.bin"])
    victim.chmod(0o644)
    with victim.open("r+b") as handle:
        handle.write(b"corrupt!")
    restarted = await harvester(system, tmp_path, "hpc")
    await run_task(system, restarted, headers, {**config, "maxPoints": 1}, digests)
    assert restarted.datasets.cache.downloads == 1
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == digests["weights.bin"]


async def test_an_interrupted_upload_resumes_with_the_missing_parts(
    system: Central, tmp_path: Path
) -> None:
    token = await system.token("bob", ["user"])
    headers = {"Authorization": f"Bearer {token}"}
    content = dataset_files(tmp_path / "data")
    files = [
        {"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for n, d in content.items()
    ]
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        reply = await http.put("/api/v1/datasets/ds1", json={"files": files}, headers=headers)
        plan = reply.json()
        assert [(u["file"], u["part"]) for u in plan["uploads"]] == [
            ("weights.bin", 1),
            ("weights.bin", 2),
            ("weights.bin", 3),
            ("labels.npy", 1),
        ]
        first = plan["uploads"][0]
        assert (await http.put(first["url"], content=content["weights.bin"][:PART])).is_success
        early = await http.post("/api/v1/datasets/ds1/complete", headers=headers)
        assert early.status_code == 409
        assert "3 part(s) not uploaded yet (weights.bin part 2" in early.json()["detail"]
        shown = (await http.get("/api/v1/datasets/ds1", headers=headers)).json()
        assert shown["status"] == "uploading"

    code, out = await hpo(system, token, tmp_path, "dataset", "upload", "ds1", "data")
    assert code == 0, out
    assert "ds1: 3 part(s)" in out, "the part already stored is not sent again"
    sha = hashlib.sha256(content["weights.bin"]).hexdigest()
    assert (
        await system.ctx.artifacts.get_bytes(part_key("bob", "ds1", sha, 3))
        == (content["weights.bin"][2 * PART :])
    )


async def test_datasets_are_their_owners_and_bad_input_is_a_4xx_naming_it(
    system: Central, tmp_path: Path
) -> None:
    alice = {"Authorization": f"Bearer {await system.token('alice', ['user'])}"}
    bob = {"Authorization": f"Bearer {await system.token('bob', ['user'])}"}
    good = {"name": "a.bin", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        bad_name = await http.put("/api/v1/datasets/.hidden", json={"files": [good]}, headers=alice)
        assert bad_name.status_code == 422
        assert bad_name.json()["detail"][0]["loc"] == ["path", "name"]
        escape = {**good, "name": "../etc/passwd"}
        bad_file = await http.put("/api/v1/datasets/d", json={"files": [escape]}, headers=alice)
        assert bad_file.status_code == 422
        assert bad_file.json()["detail"][0]["loc"] == ["body", "files", 0, "name"]
        twice = await http.put("/api/v1/datasets/d", json={"files": [good, good]}, headers=alice)
        assert twice.status_code == 422 and "repeated" in twice.text

        plan = (await http.put("/api/v1/datasets/d", json={"files": [good]}, headers=alice)).json()
        assert (await http.put(plan["uploads"][0]["url"], content=b"abc")).is_success
        done = await http.post("/api/v1/datasets/d/complete", headers=alice)
        assert done.json()["status"] == "ready"
        other = {**good, "name": "b.bin"}
        clash = await http.put("/api/v1/datasets/d", json={"files": [other]}, headers=alice)
        assert clash.status_code == 409 and "hpo dataset rm d" in clash.json()["detail"]

        assert (await http.get("/api/v1/datasets/d", headers=bob)).status_code == 404
        assert (await http.delete("/api/v1/datasets/d", headers=bob)).status_code == 404
        assert (await http.get("/api/v1/datasets", headers=bob)).json() == []

        assert (await http.delete("/api/v1/datasets/d", headers=alice)).status_code == 204
        assert (await http.get("/api/v1/datasets/d", headers=alice)).status_code == 404
    assert await system.ctx.artifacts.list("alice/datasets/") == []


async def upload_directly(
    http: httpx.AsyncClient, headers: dict[str, str], name: str, content: dict[str, bytes]
) -> None:
    files = [
        {"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for n, d in content.items()
    ]
    plan = await http.put(f"/api/v1/datasets/{name}", json={"files": files}, headers=headers)
    for item in plan.json()["uploads"]:
        data = content[item["file"]][(item["part"] - 1) * PART :][: item["size"]]
        assert (await http.put(item["url"], content=data)).is_success
    done = await http.post(f"/api/v1/datasets/{name}/complete", headers=headers)
    assert done.json()["status"] == "ready", done.text


async def test_a_segments_jobs_are_given_only_its_files_and_its_datasets(
    system: Central,
) -> None:
    token = await system.token("carol", ["user"])
    headers = {"Authorization": f"Bearer {token}"}
    segments = [
        {"name": "arms", "files": ["a.bin", "c.bin"]},
        {"name": "legs", "datasets": ["user.carol.calib"]},
    ]
    space = {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}
    body = {
        "config": {
            "evaluationExec": "true",
            "trainingDS": "user.carol.main",
            "segmentSpecFile": "seg.json",
            "maxPoints": 1,
            "nParallelEvaluation": 2,
        },
        "searchSpace": [space, space],
        "files": {"seg.json": json.dumps(segments)},
    }
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as http:
        await upload_directly(
            http, headers, "user.carol.main", {n: n.encode() for n in ("a.bin", "b.bin", "c.bin")}
        )
        await upload_directly(http, headers, "user.carol.calib", {"k.bin": b"k"})
        reply = await http.post("/api/v1/tasks", json=body, headers=headers)
        assert reply.status_code == 201, reply.text
        site = FakeSite(http, "s1", await system.token("ops", ["edge:s1"]))
        await site.heartbeat(free=2)
        jobs: dict[str, dict[str, Any]] = {}
        while len(jobs) < 2:
            jobs.update((j["segment"], j) for j in await site.lease(2, wait=0.5))
    arms = jobs["arms"]["datasets"]
    assert [(d["name"], d["select"]) for d in arms] == [("user.carol.main", ["a.bin", "c.bin"])]
    assert [f["name"] for f in arms[0]["files"]] == ["a.bin", "c.bin"]
    legs = jobs["legs"]["datasets"]
    assert [(d["name"], d["select"]) for d in legs] == [("user.carol.calib", None)]
    assert [f["name"] for f in legs[0]["files"]] == ["k.bin"]
    async with httpx.AsyncClient(timeout=30) as plain:  # the part URLs need no token
        got = await plain.get(legs[0]["files"][0]["parts"][0])
    assert got.content == b"k"


@pytest.mark.s3
async def test_with_an_s3_store_parts_go_up_and_come_down_through_presigned_urls(
    mongo_db_url: str, bus_prefix: str, s3_bucket_url: str, tmp_path: Path
) -> None:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=s3_bucket_url,
        home=tmp_path,
        dataset_part_bytes=PART,
    ) as system:
        token = await system.token("alice", ["user"])
        headers = {"Authorization": f"Bearer {token}"}
        content = dataset_files(tmp_path / "mnist")
        digests = {n: hashlib.sha256(d).hexdigest() for n, d in content.items()}
        code, out = await hpo(system, token, tmp_path, "dataset", "upload", "ds", "mnist")
        assert code == 0, out
        site = await harvester(system, tmp_path, "hpc")
        await run_task(
            system,
            site,
            headers,
            {"trainingDS": "ds", "maxPoints": 2, "nParallelEvaluation": 2},
            digests,
        )
        assert site.datasets.cache.downloads == 2
        code, out = await hpo(system, token, tmp_path, "dataset", "rm", "ds")
        assert code == 0, out
        assert await system.ctx.artifacts.list("alice/datasets/") == []
