"""503 with Retry-After while the bus or the database is away.

A request that meets an outage (RabbitMQ restarting, the database unreachable) is
answered 503 with ``Retry-After``, so the harvester and the ``hpo`` client retry it later,
instead of a 500 that reads like a bug. A 503 is always safe to retry: an edge report is
conditional on its lease generation (a repeat is "already recorded"), and the writes
whose repetition would not be harmless (a lease, a task submission) do not fail on the
bus at all once written (:func:`publish_hint`). What was written before the outage stays
written; the reconcile passes deliver what the lost message would have triggered.
"""

from __future__ import annotations

import logging

import aiormq.exceptions
from aio_pika.exceptions import ChannelInvalidStateError
from fastapi import Request
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from services.outage import describe, is_outage
from shared.bus import Bus, BusUnavailableError, RequestLostError
from shared.clock import new_id
from shared.messages import Message

log = logging.getLogger(__name__)

OUTAGE_TYPES: tuple[type[Exception], ...] = (
    PyMongoError,
    BusUnavailableError,
    RequestLostError,
    aiormq.exceptions.AMQPError,
    ChannelInvalidStateError,
    ConnectionError,
)
"""The classes of the errors :func:`services.outage.is_outage` may accept."""


def unavailable_response(request: Request, exc: Exception, retry_after: int) -> JSONResponse:
    """The 503 for an outage; any other error of these classes is an internal error."""
    if not is_outage(exc):
        error_id = new_id()
        log.error("error %s on %s %s", error_id, request.method, _route(request), exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": f"internal error (id {error_id})"})
    what = "the message bus" if _is_bus(exc) else "the database"
    log.warning(
        "503 on %s %s: %s is unavailable (%s)", request.method, _route(request), what, describe(exc)
    )
    return JSONResponse(
        status_code=503,
        content={"detail": f"{what} is unavailable; retry in {retry_after} s"},
        headers={"Retry-After": str(retry_after)},
    )


def _route(request: Request) -> str:
    """The route's template (``/api/ask/{token}``), never the path: paths carry tokens."""
    return str(getattr(request.scope.get("route"), "path", "?"))


def _is_bus(exc: Exception) -> bool:
    return not isinstance(exc, PyMongoError)


async def publish_hint(bus: Bus, message: Message) -> None:
    """Publish a hint after a write that the client must not repeat (a lease handed out,
    a task created): if the bus is away the write stands, the reply goes out, and the
    reconcile passes do what the hint would have started, a few seconds later."""
    try:
        await bus.publish(message)
    except BusUnavailableError as exc:
        log.warning(
            "hint %s not published (%s); the reconcile pass covers it", message.routing_key, exc
        )
