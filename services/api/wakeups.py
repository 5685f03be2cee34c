"""Wake-ups for waiting lease polls: a job assigned to a site ends that site's wait.

A harvester's lease request may wait up to its ``wait_seconds`` for work. Instead of
asking the database every few milliseconds whether a job was assigned meanwhile, the
api watches the bus for ``job.assigned`` (the broker publishes it after its write) and
wakes the polls of that site, which then ask the database once. A watch is at most
once, so a wait also re-reads the database every ``recheck`` seconds without a
wake-up: a hint lost with a connection delays a lease by that much, never forever.
"""

from __future__ import annotations

import asyncio
import logging

from shared.bus import Bus, Subscription
from shared.messages import JobAssigned, Message

log = logging.getLogger(__name__)


class SiteWakeups:
    """One event per site, replaced each time it fires, so no wake-up is missed
    between a poll's database read and its wait."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._events: dict[str, asyncio.Event] = {}
        self._subscription: Subscription | None = None
        self._lock = asyncio.Lock()

    @property
    def watching(self) -> bool:
        return self._subscription is not None

    async def start(self) -> bool:
        """Watch the bus (once); False when it cannot now, and the polls fall back to
        re-reading the database at their own pace."""
        async with self._lock:
            if self._subscription is None:
                try:
                    self._subscription = await self._bus.watch(
                        [JobAssigned.routing_key], self._on_message
                    )
                except Exception as exc:  # the bus is away: polling still works
                    log.warning("lease wake-ups unavailable, polling instead: %s", exc)
                    return False
        return True

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()

    def current(self, site: str) -> asyncio.Event:
        """The event the next wake-up of ``site`` sets: take it *before* reading the
        database, then wait on it."""
        event = self._events.get(site)
        if event is None:
            event = self._events[site] = asyncio.Event()
        return event

    def wake(self, site: str) -> None:
        event = self._events.pop(site, None)
        if event is not None:
            event.set()

    async def _on_message(self, message: Message) -> None:
        if isinstance(message, JobAssigned):
            self.wake(message.site)


async def wait_for_wakeup(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """True when ``event`` fired within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(max(timeout, 0.0)):
            await event.wait()
    except TimeoutError:
        return False
    return True
