"""When a periodic pass also repairs: puts kept counters and sets right from the records
they stand for, and looks for work a lost message left undone.

Those reads cost what the records cost (a task's jobs, every unapplied job), and on a
server that answers them by scanning they dominate a pass. They run at a process's
first pass, which is what a restart after a crash needs, and then every
``repair_interval`` seconds; the rest of a pass (what events would have started) runs
every ``reconcile_interval``.
"""

from __future__ import annotations

import time


class RepairClock:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None

    def due(self) -> bool:
        """True at the first call and once ``interval`` has passed since the last True."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True
