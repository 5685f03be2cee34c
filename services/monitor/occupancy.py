"""GPU-slot occupancy over time: the sites' heartbeats sampled into a ring per site.

Heartbeats overwrite the site record, so the history exists only here: the monitor
samples the (small) sites collection every ``interval`` seconds, whether or not a page
is open, and keeps the last :data:`SAMPLES` samples per site in memory.
"""

from __future__ import annotations

import time
from collections import deque

from services.monitor import reads
from shared.store import Store

SAMPLES = 720
"""Two hours at the default ten-second interval."""


class Occupancy:
    def __init__(self, store: Store, *, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.history: dict[str, deque[tuple[float, int, int]]] = {}
        self._last = -float("inf")

    async def sample(self, *, force: bool = False) -> bool:
        """Record one sample per site unless one was taken within ``interval``."""
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return False
        self._last = now
        stamp = time.time()
        for site, _doc in await reads.sites(self.store):
            ring = self.history.setdefault(site.id, deque(maxlen=SAMPLES))
            busy = max(0, site.total_slots - site.free_slots)
            ring.append((stamp, busy, site.total_slots))
        return True

    def of(self, site_id: str) -> list[tuple[float, int, int]]:
        return list(self.history.get(site_id, ()))
