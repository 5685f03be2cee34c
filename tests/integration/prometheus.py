"""A private Prometheus server (Debian's ``prometheus``) scraping given targets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.netutil import free_port

HOW_TO_INSTALL = (
    "install Debian's prometheus (apt-get install -y --no-install-recommends prometheus; "
    "deploy/dev/test.sh does it)"
)


@dataclass
class Prometheus:
    url: str
    http: httpx.AsyncClient

    async def targets_up(self) -> dict[str, str]:
        """Each scrape job's target health (``up``, ``down``, ``unknown``)."""
        reply = await self.http.get(f"{self.url}/api/v1/targets")
        reply.raise_for_status()
        active = reply.json()["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}

    async def query(self, promql: str) -> list[dict[str, Any]]:
        reply = await self.http.get(f"{self.url}/api/v1/query", params={"query": promql})
        reply.raise_for_status()
        body = reply.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def value(self, promql: str) -> float | None:
        """The single value of an instant query, or None while it has no series."""
        result = await self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])


def grafana_expressions(dashboard: Path) -> list[str]:
    """Every query of a Grafana dashboard, with Grafana's interval variable filled in."""
    panels = json.loads(dashboard.read_text())["panels"]
    return [
        target["expr"].replace("$__rate_interval", "1m")
        for panel in panels
        for target in panel["targets"]
    ]


def _config(targets: Mapping[str, str]) -> str:
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        for job, target in targets.items()
    )
    return (
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
    )


@contextlib.asynccontextmanager
async def prometheus(targets: Mapping[str, str], workdir: Path) -> AsyncIterator[Prometheus]:
    """Prometheus scraping ``targets`` (job name -> ``host:port``) every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(f"no prometheus binary: {HOW_TO_INSTALL}", pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_config(targets))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                assert process.poll() is None, (workdir / "prometheus.log").read_text()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/-/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            yield Prometheus(url=url, http=http)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
