"""``hpo artifacts ls`` and ``hpo download`` as a user runs them, against the real api
and artifact store, with the test playing the site that uploaded the files."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.integration.monitor_support import upload
from tests.integration.test_monitor import submission, user

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]


async def hpo(system: Central, token: str, cwd: Path, *args: str) -> tuple[int, str]:
    """The CLI in its own process (it is synchronous; the services share this loop)."""
    env = {**os.environ, "HPO_URL": system.api_url, "HPO_TOKEN": token, "COLUMNS": "200"}
    env["XDG_CONFIG_HOME"] = str(cwd / "config")
    env["PYTHONPATH"] = str(REPO)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def two_evaluated_points(system: Central, token: str) -> tuple[str, dict[int, bytes]]:
    logs: dict[int, bytes] = {}
    async with httpx.AsyncClient(base_url=system.api_url, timeout=60) as api:
        site = FakeSite(api, "s1", await system.token("ops", ["edge:s1"]))
        await site.heartbeat(free=1)
        task = (await api.post("/api/v1/tasks", json=submission(2), headers=user(token))).json()
        while len(logs) < 2:
            for job in await site.lease(1, wait=0.5):
                index = int(job["points"][0]["index"])
                logs[index] = f"log of point {index}\n".encode() * (1000 * (index + 1))
                await upload(site, job, "log", logs[index])
                await upload(site, job, "metrics", b"metrics %d" % index)
                await site.finish(job, 0.1 * index)
    return task["id"], logs


async def test_ls_lists_each_points_artifacts_with_size_and_verification(
    mongo_db_url: str, tmp_path: Path
) -> None:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix="",
        artifacts_url=file_artifacts(tmp_path),
    ) as system:
        token = await system.token("alice", ["user"])
        task_id, logs = await two_evaluated_points(system, token)
        code, out = await hpo(system, token, tmp_path, "artifacts", "ls", task_id, "--json")
        assert code == 0, out
        listed: list[dict[str, Any]] = json.loads(out)
        assert sorted((a["index"], a["kind"], a["size"]) for a in listed) == [
            (0, "log", len(logs[0])),
            (0, "metrics", 9),
            (1, "log", len(logs[1])),
            (1, "metrics", 9),
        ]
        code, out = await hpo(system, token, tmp_path, "artifacts", "ls", task_id, "--point", "1")
        assert code == 0 and "2 artifact(s)" in out and "log" in out and "metrics" in out
        code, out = await hpo(system, token, tmp_path, "artifacts", "ls", task_id, "--kind", "bad")
        assert code == 2 and "--kind" in out
        bob = await system.token("bob", ["user"])
        code, out = await hpo(system, bob, tmp_path, "artifacts", "ls", task_id)
        assert code == 1 and "404" in out


async def test_download_fetches_one_points_files_or_one_kind(
    mongo_db_url: str, tmp_path: Path
) -> None:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix="",
        artifacts_url=file_artifacts(tmp_path),
    ) as system:
        token = await system.token("alice", ["user"])
        task_id, logs = await two_evaluated_points(system, token)
        code, out = await hpo(system, token, tmp_path, "download", task_id, "--point", "1")
        assert code == 0, out
        got = sorted(p for p in (tmp_path / task_id).rglob("*") if p.is_file())
        assert not any(p.name.endswith(".part") for p in got)
        assert len(got) == 2
        assert logs[1] in [p.read_bytes() for p in got]
        assert "2 file(s)" in out
        dest = tmp_path / "logs"
        code, out = await hpo(
            system, token, tmp_path, "download", task_id, "--kind", "log", "--dest", str(dest)
        )
        assert code == 0, out
        files = [p for p in dest.rglob("*") if p.is_file()]
        assert sorted(p.read_bytes() for p in files) == sorted(logs.values())
        code, out = await hpo(system, token, tmp_path, "download", task_id, "--point", "7")
        assert code == 1 and "no artifact matches" in out
