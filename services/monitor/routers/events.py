"""``/monitor/api/events``: the server-sent event stream of an open page.

The page reads it with ``fetch`` (so the token travels in the Authorization header,
not in a URL). An event says what changed and carries the new header line (status,
counts, best); the page then fetches the panels it shows. A comment line every
:data:`~services.monitor.live.PING_SECONDS` keeps proxies from closing an idle stream;
when the browser goes away the stream ends and unregisters from the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from sse_starlette import EventSourceResponse, ServerSentEvent

from services.api.deps import CurrentUser
from services.monitor import reads
from services.monitor.deps import Monitor, MonitorState
from services.monitor.live import PING_SECONDS, Subscription

router = APIRouter(prefix="/monitor/api", tags=["monitor"])


async def _header(mon: MonitorState, owner: str, task_id: str | None) -> str:
    if task_id is None:
        return "{}"
    task = await reads.own_task(mon.store, task_id, owner)
    if task is None:
        return "{}"
    await mon.cache.entry(task)  # what the hub refreshes must be loaded
    return (await mon.summaries.row(task, wait=True)).model_dump_json()


async def _stream(
    mon: MonitorState, request: Request, owner: str, task_id: str | None
) -> AsyncIterator[ServerSentEvent]:
    async with mon.hub.subscribe(owner, task_id) as sub:
        yield ServerSentEvent(event="hello", data=await _header(mon, owner, task_id))
        while not await request.is_disconnected():
            if await _woken(sub):
                sub.sent += 1
                yield ServerSentEvent(
                    event="changed", id=str(sub.sent), data=await _header(mon, owner, task_id)
                )


async def _woken(sub: Subscription) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sub.wake.wait(), timeout=1.0)
    if sub.wake.is_set():
        sub.wake.clear()
        return True
    return False


@router.get("/events")
async def events(
    request: Request,
    mon: Monitor,
    user: CurrentUser,
    task: Annotated[str | None, Query(max_length=400)] = None,
) -> EventSourceResponse:
    if task is not None and await reads.own_task(mon.store, task, user.owner) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task}")
    return EventSourceResponse(
        _stream(mon, request, user.owner, task), ping=int(PING_SECONDS), send_timeout=30
    )
