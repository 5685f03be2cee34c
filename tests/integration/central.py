"""A running set of central services for integration tests, with the test as the edge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.api.auth import issue_token
from services.assembly import SERVICE_NAMES, Assembly, assemble, run_assembly
from services.context import Context, open_context
from services.http import bind
from shared.config import (
    ApiSettings,
    BrokerSettings,
    MonitorSettings,
    SteeringSettings,
    StorageSettings,
    load,
)

SANDBOX_PYTHON = "python3"
"""The interpreter the tests' steering programs start with: the host's, found on the
sandbox's PATH. The test's own interpreter may live in a home directory that the
sandbox hides and its unprivileged user cannot read."""


@dataclass
class Central:
    ctx: Context
    api_url: str
    monitor_url: str
    ops_url: str
    """The process's operations listener: /healthz, /readyz, /metrics."""
    assembly: Assembly | None = None

    async def token(self, owner: str, scopes: list[str]) -> str:
        return (await issue_token(self.ctx.store, owner, scopes))[1]


@contextlib.asynccontextmanager
async def central(
    *, mongo_url: str, bus_url: str, bus_prefix: str, artifacts_url: str, **extra: Any
) -> AsyncIterator[Central]:
    api_sock = bind("127.0.0.1", 0)
    monitor_sock = bind("127.0.0.1", 0)
    ops_sock = bind("127.0.0.1", 0)
    api_url = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
    overrides: dict[str, Any] = {
        "bus_url": bus_url,
        "bus_prefix": bus_prefix,
        "mongo_url": mongo_url,
        "artifacts_url": artifacts_url,
        "public_url": api_url,
        "dev_mode": True,
        "reconcile_interval": extra.pop("reconcile_interval", 0.3),
        # the tests see a repair at the next pass; the benchmarks pass the product's
        "repair_interval": extra.pop("repair_interval", 0.0),
        "lease_poll_interval": 0.05,
        **extra,
    }
    names = list(overrides.pop("services", None) or SERVICE_NAMES)
    api = load(ApiSettings, **overrides)
    ctx = await open_context(api)
    assembly = assemble(
        names,
        ctx,
        api=api,
        monitor=load(MonitorSettings, **overrides),
        broker=load(BrokerSettings, **overrides),
        storage=load(StorageSettings, **overrides),
        steering=load(SteeringSettings, **overrides),
        api_socket=api_sock,
        monitor_socket=monitor_sock,
        ops_socket=ops_sock,
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(run_assembly(assembly, api.reconcile_interval, stop))
    try:
        yield Central(
            ctx=ctx,
            api_url=api_url,
            monitor_url=assembly.url_of("monitor") if "monitor" in names else "",
            ops_url=assembly.url_of("ops"),
            assembly=assembly,
        )
    finally:
        stop.set()
        await runner
        await ctx.close()


def file_artifacts(tmp: Path) -> str:
    return f"file://{tmp / 'artifacts'}"


class FakeSite:
    """The test plays the harvester through the real edge API."""

    def __init__(self, http: httpx.AsyncClient, name: str, token: str) -> None:
        self.http, self.name = http, name
        self.headers = {"Authorization": f"Bearer {token}"}

    async def heartbeat(self, free: int) -> None:
        reply = await self.http.post(
            f"/edge/v1/sites/{self.name}/heartbeat",
            json={"free_slots": free, "total_slots": free},
            headers=self.headers,
        )
        reply.raise_for_status()

    async def lease(self, n: int = 1, wait: float = 2.0) -> list[dict[str, Any]]:
        reply = await self.http.post(
            f"/edge/v1/sites/{self.name}/leases",
            json={"max_jobs": n, "wait_seconds": wait},
            headers=self.headers,
        )
        reply.raise_for_status()
        jobs: list[dict[str, Any]] = reply.json()["jobs"]
        return jobs

    async def event(self, job: dict[str, Any], kind: str, **body: Any) -> dict[str, Any]:
        reply = await self.http.post(
            f"/edge/v1/jobs/{job['job_id']}/events",
            json={"kind": kind, "generation": job["generation"], **body},
            headers=self.headers,
        )
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    async def finish(self, job: dict[str, Any], loss: float) -> dict[str, Any]:
        point = job["points"][0]["point_id"]
        return await self.event(job, "finished", results=[{"point_id": point, "loss": loss}])
