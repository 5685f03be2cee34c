"""Late-binding decisions of the harvester (layout 1), over an already-read view.

Pure functions, so every rule is unit-tested without processes: which worker a staged
job goes to, how many workers to submit, which inbox entries to take back, and which
allocations to release. :mod:`edge.harvester.pool` reads the files and carries them out.

Rules:

* a worker accepts entries while it is queued (``pending``) or ``live`` and not released,
  up to ``slots x (1 + queue_per_slot)`` jobs running or waiting in its inbox, so a slot
  whose payload ends finds its next job at once;
* a job goes to the worker with the most idle slots, a running worker before a queued
  one (the job starts sooner there);
* workers are submitted for the jobs no worker can take, as long as all workers not
  ended hold at most ``max_slots`` GPU slots;
* entries of a worker that takes no more (``draining``, ``ended``, released) are taken
  back and dispatched elsewhere;
* a worker with nothing running and nothing in its inbox, while no job waits, is
  released: at once if it is still queued, after ``release_after`` seconds of idleness
  if it runs (it normally exits by itself before that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

WorkerPhase = Literal["pending", "live", "draining", "ended"]


@dataclass(frozen=True)
class WorkerView:
    worker_id: str
    slots: int
    phase: WorkerPhase
    released: bool = False
    running: int = 0
    """Claimed jobs that have not ended."""
    queued: tuple[str, ...] = ()
    """Job ids in its inbox."""
    idle_for: float = 0.0
    """Seconds it has had nothing running and nothing queued (as this harvester saw)."""

    @property
    def accepting(self) -> bool:
        return self.phase in ("pending", "live") and not self.released

    def capacity(self, queue_per_slot: int) -> int:
        if not self.accepting:
            return 0
        return max(0, self.slots * (1 + queue_per_slot) - self.running - len(self.queued))


@dataclass
class Plan:
    assign: list[tuple[str, str]] = field(default_factory=list)
    """(job_id, worker_id) entries to write."""
    submit: int = 0
    """New workers to submit (their jobs are assigned on the next plan)."""
    release: list[str] = field(default_factory=list)


def to_withdraw(workers: Sequence[WorkerView]) -> list[tuple[str, str]]:
    """(job_id, worker_id) entries to take back: their worker will not run them."""
    return [(job, w.worker_id) for w in workers if not w.accepting for job in w.queued]


def plan(
    workers: Sequence[WorkerView],
    waiting: Sequence[str],
    *,
    queue_per_slot: int,
    max_slots: int,
    slots_per_worker: int,
    release_after: float,
) -> Plan:
    """What to do for ``waiting`` (staged jobs in no inbox, oldest first)."""
    result = Plan()
    capacity = {w.worker_id: w.capacity(queue_per_slot) for w in workers}
    idle = {w.worker_id: w.slots - w.running - len(w.queued) for w in workers}
    live_first = {w.worker_id: w.phase == "live" for w in workers}
    left: list[str] = []
    for job_id in waiting:
        open_ = [wid for wid, cap in capacity.items() if cap > 0]
        if not open_:
            left.append(job_id)
            continue
        best = max(open_, key=lambda wid: (idle[wid], live_first[wid], capacity[wid]))
        result.assign.append((job_id, best))
        capacity[best] -= 1
        idle[best] -= 1
    if left:
        held = sum(w.slots for w in workers if w.phase != "ended")
        room = max(0, max_slots - held) // slots_per_worker
        per_worker = slots_per_worker * (1 + queue_per_slot)
        result.submit = min(room, math.ceil(len(left) / per_worker))
    else:
        assigned = {wid for _, wid in result.assign}
        for w in workers:
            if (
                w.accepting
                and w.running == 0
                and not w.queued
                and w.worker_id not in assigned
                and (w.phase == "pending" or w.idle_for >= release_after)
            ):
                result.release.append(w.worker_id)
    return result
