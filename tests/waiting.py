"""Waiting on conditions, never on wall-clock deadlines.

A test polls what it waits for and lets its own timeout (pytest-timeout, 120 s by
default, more where a test declares it) bound the wait: a deadline of its own would only
fail the test on a slow or loaded machine, where the same code is merely later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T | None]], *, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something true, and return that."""
    while True:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)


def until_sync(check: Callable[[], T | None], *, every: float = 0.1) -> T:
    """:func:`until` for synchronous code."""
    while True:
        value = check()
        if value:
            return value
        time.sleep(every)
