"""What the monitor's tests share: the event stream read as a browser would, artifact
uploads through the real edge API, and the monitor's state inside a running system."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx

from tests.integration.central import Central, FakeSite

if TYPE_CHECKING:
    from services.monitor.deps import MonitorState


def monitor_state(system: Central) -> MonitorState:
    assert system.assembly is not None
    for service in system.assembly.services:
        if service.name == "monitor":
            inner = getattr(service, "inner", service)  # unwrapped from its metrics timer
            state: MonitorState = inner.state
            return state
    raise AssertionError("the system runs no monitor")


async def events(reply: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a server-sent event stream; comments (pings) skipped."""
    kind, data = "message", ""
    async for line in reply.aiter_lines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line.strip() and (data or kind != "message"):
            yield kind, json.loads(data) if data else {}
            kind, data = "message", ""


async def wait_until(check: Callable[[], bool], step: float = 0.02) -> None:
    """Until ``check()`` holds; the test's own timeout bounds the wait."""
    while not check():
        await asyncio.sleep(step)


async def upload(site: FakeSite, job: dict[str, Any], kind: str, data: bytes) -> None:
    """Store one artifact of a leased job as the harvester does: presigned PUT, confirm."""
    urls = await site.http.post(
        f"/edge/v1/jobs/{job['job_id']}/artifacts",
        json={"generation": job["generation"], "kinds": [kind]},
        headers=site.headers,
    )
    urls.raise_for_status()
    slot = urls.json()["uploads"][0]
    async with httpx.AsyncClient() as raw:
        put = await raw.put(slot["url"], content=data)
        put.raise_for_status()
    confirm = await site.http.post(
        f"/edge/v1/jobs/{job['job_id']}/artifacts/confirm",
        json={
            "generation": job["generation"],
            "kind": kind,
            "key": slot["key"],
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        headers=site.headers,
    )
    confirm.raise_for_status()
