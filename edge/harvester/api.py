"""Typed async client of the edge api (docs/architecture.md §6.6, bodies in shared/edge_api.py).

Transient trouble (connection errors, timeouts, 5xx, 429) is retried a few times with
a bounded exponential backoff, because the login node's link to the central service
is expected to blink; a 503 or 429 with ``Retry-After`` (the api's answer while its bus
or database is away) waits what it says instead. After that
:class:`ApiUnavailableError` tells the harvester to try again on a later cycle. A 4xx
is an answer, not an outage: it raises :class:`EdgeApiError` at once, carrying the
server's ``detail``.

The bearer token is sent to the api only, never to presigned upload URLs (which carry
their own signature and may point at another host). A URL in a log line or an error
message has its signature removed (:func:`shared.logs.redact`): error messages travel
on as a job's failure reason, past any log formatter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from shared.edge_api import (
    ArtifactConfirm,
    ArtifactConfirmBatch,
    ArtifactConfirmBatchReply,
    ArtifactConfirmReply,
    ArtifactUrlBatch,
    ArtifactUrlBatchReply,
    ArtifactUrlReply,
    ArtifactUrlRequest,
    CheckpointConfirm,
    CheckpointConfirmReply,
    CheckpointUpload,
    CheckpointUrlRequest,
    HeartbeatBatch,
    HeartbeatBatchReply,
    IntermediateReply,
    IntermediateReport,
    JobEvent,
    JobEventReply,
    LeaseReply,
    LeaseRequest,
    ReportBatch,
    ReportBatchReply,
    SiteHeartbeatBody,
    SiteHeartbeatReply,
)
from shared.logs import redact
from shared.netutil import retry_after

log = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT", bound=BaseModel)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
STREAM_CHUNK = 1024 * 1024


class EdgeApiError(Exception):
    """The api answered with an error status that retrying will not change."""

    def __init__(self, status: int, detail: str, url: str) -> None:
        super().__init__(f"{status} from {url}: {detail}")
        self.status = status
        self.detail = detail


class ApiUnavailableError(Exception):
    """The api could not be reached (or kept failing) after every retry."""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)
    return str(body)[:500]


class EdgeApiClient:
    """One per harvester; use as ``async with EdgeApiClient(...) as api``."""

    def __init__(
        self,
        base_url: str,
        site: str,
        token: Callable[[], str],
        *,
        verify: bool | ssl.SSLContext = True,
        timeout: float = 30.0,
        attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._site = site
        self._token = token
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._http = httpx.AsyncClient(verify=verify, timeout=timeout, transport=transport)

    async def __aenter__(self) -> EdgeApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        delay = self._backoff
        shown = redact(url)
        for attempt in range(1, self._attempts + 1):
            asked: float | None = None
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise EdgeApiError(response.status_code, _detail(response), shown)
                problem = f"{response.status_code}: {_detail(response)}"
                if response.status_code in (429, 503):
                    asked = retry_after(response.headers.get("Retry-After"))
            if attempt == self._attempts:
                raise ApiUnavailableError(
                    redact(f"{method} {shown} failed {attempt} times: {problem}")
                )
            pause = asked if asked is not None else delay * (0.5 + random.random())  # noqa: S311
            log.warning(
                "%s %s failed (%s); retry %d in %.1fs", method, shown, problem, attempt, pause
            )
            await self._sleep(pause)
            delay = min(delay * 2, self._max_backoff)
        raise AssertionError("unreachable")

    async def _post(
        self, path: str, body: BaseModel, reply: type[ReplyT], read_timeout: float | None = None
    ) -> ReplyT:
        response = await self._send(
            "POST",
            f"{self._base}{path}",
            content=body.model_dump_json(),
            headers={
                "Authorization": f"Bearer {self._token()}",
                "Content-Type": "application/json",
            },
            timeout=read_timeout or self._timeout,
        )
        return reply.model_validate_json(response.content)

    async def heartbeat(self, body: SiteHeartbeatBody) -> SiteHeartbeatReply:
        return await self._post(f"/edge/v1/sites/{self._site}/heartbeat", body, SiteHeartbeatReply)

    async def lease(self, request: LeaseRequest) -> LeaseReply:
        """Long-poll: the api holds the request up to ``wait_seconds`` if it has no job."""
        return await self._post(
            f"/edge/v1/sites/{self._site}/leases",
            request,
            LeaseReply,
            read_timeout=request.wait_seconds + self._timeout,
        )

    async def held_leases(self) -> LeaseReply:
        """The jobs the api says this site holds (to recover leases lost in a crash)."""
        response = await self._send(
            "GET",
            f"{self._base}/edge/v1/sites/{self._site}/leases",
            headers={"Authorization": f"Bearer {self._token()}"},
            timeout=self._timeout,
        )
        return LeaseReply.model_validate_json(response.content)

    async def heartbeats(self, batch: HeartbeatBatch) -> HeartbeatBatchReply:
        """Many jobs' heartbeats in one request (EdgeApiError 404 from an older api)."""
        return await self._post(
            f"/edge/v1/sites/{self._site}/heartbeats", batch, HeartbeatBatchReply
        )

    async def reports(self, batch: ReportBatch) -> ReportBatchReply:
        """Many jobs' terminal events in one request (EdgeApiError 404 from an older api)."""
        return await self._post(f"/edge/v1/sites/{self._site}/reports", batch, ReportBatchReply)

    async def job_event(self, job_id: str, event: JobEvent) -> JobEventReply:
        return await self._post(f"/edge/v1/jobs/{job_id}/events", event, JobEventReply)

    async def intermediate(self, job_id: str, report: IntermediateReport) -> IntermediateReply:
        return await self._post(f"/edge/v1/jobs/{job_id}/intermediate", report, IntermediateReply)

    async def artifact_urls(self, job_id: str, request: ArtifactUrlRequest) -> ArtifactUrlReply:
        return await self._post(f"/edge/v1/jobs/{job_id}/artifacts", request, ArtifactUrlReply)

    async def confirm_artifact(self, job_id: str, confirm: ArtifactConfirm) -> ArtifactConfirmReply:
        return await self._post(
            f"/edge/v1/jobs/{job_id}/artifacts/confirm", confirm, ArtifactConfirmReply
        )

    async def artifact_url_batch(self, batch: ArtifactUrlBatch) -> ArtifactUrlBatchReply:
        """Upload URLs of many jobs' artifacts in one request (404 from an older api)."""
        return await self._post(
            f"/edge/v1/sites/{self._site}/artifacts", batch, ArtifactUrlBatchReply
        )

    async def confirm_artifact_batch(
        self, batch: ArtifactConfirmBatch
    ) -> ArtifactConfirmBatchReply:
        """Many uploaded artifacts confirmed in one request (404 from an older api)."""
        return await self._post(
            f"/edge/v1/sites/{self._site}/artifacts/confirm", batch, ArtifactConfirmBatchReply
        )

    async def checkpoint_url(self, job_id: str, request: CheckpointUrlRequest) -> CheckpointUpload:
        return await self._post(f"/edge/v1/jobs/{job_id}/checkpoints", request, CheckpointUpload)

    async def confirm_checkpoint(
        self, job_id: str, confirm: CheckpointConfirm
    ) -> CheckpointConfirmReply:
        return await self._post(
            f"/edge/v1/jobs/{job_id}/checkpoints/confirm", confirm, CheckpointConfirmReply
        )

    async def download(self, url: str) -> bytes:
        """GET a presigned URL (without the bearer token)."""
        return (await self._send("GET", url)).content

    async def download_stream(self, url: str) -> AsyncIterator[bytes]:
        """GET a presigned URL chunk by chunk (for files too large to hold in memory).
        Raises EdgeApiError for an error answer and ApiUnavailableError when the store
        cannot be reached; no retry (the caller starts the file again)."""
        shown = redact(url)
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise EdgeApiError(response.status_code, _detail(response), shown)
                async for chunk in response.aiter_bytes(STREAM_CHUNK):
                    yield chunk
        except httpx.TransportError as exc:
            raise ApiUnavailableError(f"GET {shown}: {type(exc).__name__}: {exc}") from None

    async def upload(self, url: str, data: bytes) -> None:
        """PUT ``data`` to a presigned URL (without the bearer token)."""
        await self._send("PUT", url, content=data)
