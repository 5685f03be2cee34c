"""Running a service: subscribe its handlers, then reconcile from the database forever.

The reconcile pass is the level-triggered half of the bus design (docs/design.md,
Reliability): messages only make things happen sooner, the periodic pass makes them
happen at all. A failing pass is logged and retried at the next interval; it never stops
the service. A pass that fails because a server is away is one warning line, not a
traceback: it is expected during a restart and says nothing about the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextvars import ContextVar
from typing import Protocol

from services.outage import describe, is_outage

log = logging.getLogger(__name__)

PERIODIC_PASS: ContextVar[str] = ContextVar("periodic_pass", default="")
"""The service whose periodic pass runs in this context ("" outside one), so that a
benchmark can tell the database commands of the passes (which run per interval, not
per point) from those of the events."""


class Service(Protocol):
    name: str

    async def start(self) -> None:
        """Declare queues and subscribe handlers."""

    async def reconcile(self) -> None:
        """One level-triggered pass over the database."""

    async def stop(self) -> None:
        """Cancel subscriptions; the context is closed by the caller."""


async def reconcile_forever(service: Service, interval: float, stop: asyncio.Event) -> None:
    PERIODIC_PASS.set(service.name)  # this task runs only the passes
    while not stop.is_set():
        try:
            await service.reconcile()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_outage(exc):
                log.warning(
                    "%s: reconcile pass failed (%s); retrying in %.1fs",
                    service.name,
                    describe(exc),
                    interval,
                )
            else:
                log.exception(
                    "%s: reconcile pass failed; retrying in %.1fs", service.name, interval
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def run_services(services: list[Service], interval: float, stop: asyncio.Event) -> None:
    """Start every service, reconcile each on its own loop until ``stop`` is set."""
    for service in services:
        await service.start()
        log.info("%s started", service.name)
    try:
        async with asyncio.TaskGroup() as group:
            for service in services:
                group.create_task(reconcile_forever(service, interval, stop))
    finally:
        for service in reversed(services):
            await service.stop()
