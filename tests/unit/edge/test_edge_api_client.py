"""The harvester's api client: retries on outages, clear errors on refusals."""

from __future__ import annotations

import httpx
import pytest

from edge.harvester.api import ApiUnavailableError, EdgeApiClient, EdgeApiError
from shared.edge_api import JobEvent, SiteHeartbeatBody

HEARTBEAT_REPLY = {"site": "s", "accepted_at": "2026-11-23T10:00:00Z"}


def client(handler: httpx.MockTransport, attempts: int = 3) -> EdgeApiClient:
    return EdgeApiClient(
        "http://api.test/", "s", lambda: "tok", transport=handler, attempts=attempts, backoff=0.01
    )


async def test_5xx_and_connection_errors_are_retried() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        if len(calls) == 2:
            return httpx.Response(503, json={"detail": "restarting"})
        return httpx.Response(200, json=HEARTBEAT_REPLY)

    async with client(httpx.MockTransport(handle)) as api:
        reply = await api.heartbeat(SiteHeartbeatBody(free_slots=1))
    assert reply.site == "s"
    assert len(calls) == 3
    assert calls[0].url == "http://api.test/edge/v1/sites/s/heartbeat"
    assert calls[0].headers["authorization"] == "Bearer tok"


async def test_a_4xx_is_not_retried_and_carries_the_detail() -> None:
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(409, json={"detail": "lease generation 1 is stale"})

    async with client(httpx.MockTransport(handle)) as api:
        with pytest.raises(EdgeApiError) as caught:
            await api.job_event("j1", JobEvent(kind="heartbeat", generation=1))
    assert (caught.value.status, caught.value.detail) == (409, "lease generation 1 is stale")
    assert calls == 1


async def test_a_lasting_outage_ends_in_api_unavailable() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    async with client(httpx.MockTransport(handle), attempts=2) as api:
        with pytest.raises(ApiUnavailableError, match="failed 2 times: 502"):
            await api.heartbeat(SiteHeartbeatBody(free_slots=0))


async def test_uploads_to_presigned_urls_carry_no_token() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with client(httpx.MockTransport(handle)) as api:
        await api.upload("http://s3.test/bucket/key?X-Amz-Signature=abc", b"data")
    assert seen[0].method == "PUT"
    assert "authorization" not in seen[0].headers
    assert seen[0].content == b"data"
