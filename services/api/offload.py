"""Running CPU-bound validation off the api's event loop.

Parsing a submitted search space or a study's properties is linear in the input, but
a large input (every body is capped, still megabytes) takes long enough to stall every
other request on the loop: heartbeats, leases, health checks. So that work runs in a
worker thread, at most ``limit`` at a time, so that a burst of large submissions queues
here instead of taking every core from the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


class Offloader:
    """One per app; created where the app is built, used by its request handlers."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self._slots: asyncio.Semaphore | None = None

    async def run(self, func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``func(*args, **kwargs)`` in a worker thread; its exceptions propagate."""
        if self._slots is None:  # created on the loop that serves the app
            self._slots = asyncio.Semaphore(self.limit)
        async with self._slots:
            return await asyncio.to_thread(func, *args, **kwargs)
