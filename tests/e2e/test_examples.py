"""The shipped example runs as shipped: ``hpo submit --loadJson config.json --watch`` in
``examples/phpo-task`` (the real CLI, as a process), to the central services on
RabbitMQ, SecantusDB and moto's S3, with a real harvester built from the example's own
``site.toml`` (only the api URL, token and root are pointed at this test)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from edge.config import load_site_config
from edge.harvester.daemon import Harvester
from tests.integration.central import central

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.rabbitmq,
    pytest.mark.mongo,
    pytest.mark.s3,
    pytest.mark.timeout(300),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "phpo-task"


def site_config_for(tmp: Path, api_url: str, token: str) -> Path:
    """The example's site.toml with this test's api, token and root, and nothing else
    changed (each line replaced must exist, so a changed example fails here)."""
    text = (EXAMPLE / "site.toml").read_text()
    (tmp / "site.token").write_text(token)
    for key, value in (("api_url", api_url), ("root", str(tmp / "edge-root"))):
        lines = [line for line in text.splitlines() if line.startswith(f"{key} = ")]
        assert len(lines) == 1, f"site.toml has no single {key} line"
        text = text.replace(lines[0], f"{key} = {json.dumps(value)}")
    path = tmp / "site.toml"
    path.write_text(text)
    return path


async def test_the_example_task_completes_as_shipped(
    amqp_url: str,
    bus_prefix: str,
    mongo_db_url: str,
    s3_bucket_url: str,
    tmp_path: Path,
    amqp_prefix_cleanup: list[str],
) -> None:
    amqp_prefix_cleanup.append(amqp_url)
    config = json.loads((EXAMPLE / "config.json").read_text())
    async with central(
        mongo_url=mongo_db_url,
        bus_url=amqp_url,
        bus_prefix=bus_prefix,
        artifacts_url=s3_bucket_url,
        home=tmp_path,
    ) as system:
        site_token = await system.token("ops", ["edge:example"])
        harvester = Harvester(
            load_site_config(site_config_for(tmp_path, system.api_url, site_token))
        )
        assert harvester.config.site == "example"
        user = await system.token("alice", ["user"])
        env = {
            **os.environ,
            "HPO_URL": system.api_url,
            "HPO_TOKEN": user,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "COLUMNS": "200",
        }
        stop = asyncio.Event()
        running = asyncio.create_task(harvester.run(stop))
        try:
            cli = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "client",
                "submit",
                "--loadJson",
                "config.json",
                "--watch",
                cwd=EXAMPLE,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await cli.communicate()
        finally:
            stop.set()
            await running
        said = out.decode() + err.decode()
        assert cli.returncode == 0, said
        assert "warning" not in said, said  # every option of the example means something

        headers = {"Authorization": f"Bearer {user}"}
        async with httpx.AsyncClient(base_url=system.api_url, headers=headers) as http:
            listed = (
                await http.get("/api/v1/tasks", params={"outDS": config["outDS"].rstrip("/")})
            ).json()
            assert [t["name"] for t in listed] == ["user.alice.hpo_example_ridge_01"]
            task = (await http.get(f"/api/v1/tasks/{listed[0]['id']}")).json()
            points = (await http.get(f"/api/v1/tasks/{task['id']}/points")).json()
            artifacts = (await http.get(f"/api/v1/tasks/{task['id']}/artifacts")).json()
    assert f"submitted {task['id']}" in said
    assert task["status"] == "done" and task["reason"] == "all 8 points evaluated", task
    assert task["config"]["outDS"] == config["outDS"]
    assert len(points) == 8 and all(p["status"] == "evaluated" for p in points)
    assert task["best"]["loss"] == min(p["loss"] for p in points)
    kinds = sorted(a["kind"] for a in artifacts)
    assert kinds.count("metrics") == 8 and kinds.count("meta") == 8, kinds
