"""Running a service: subscribe its handlers, then reconcile from the database forever.

The reconcile pass is the level-triggered half of docs/architecture.md §4: messages only
make things happen sooner, the periodic pass makes them happen at all. A failing pass
is logged and retried at the next interval; it never stops the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    async def start(self) -> None:
        """Declare queues and subscribe handlers."""

    async def reconcile(self) -> None:
        """One level-triggered pass over the database."""

    async def stop(self) -> None:
        """Cancel subscriptions; the context is closed by the caller."""


async def reconcile_forever(service: Service, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await service.reconcile()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: reconcile pass failed; retrying in %.1fs", service.name, interval)
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
