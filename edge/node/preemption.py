"""When to snapshot, and whether a stopped job can be resumed (node agent side).

The batch system stops a job with SIGTERM (walltime, cancel) and kills it a little
later (Slurm's KillWait, 30 s by default), so the final snapshot is taken as soon as
the stop is seen, before the payload is signalled, and once more after the payload
ended (a payload may save on SIGTERM) if anything changed. The job is *preempted* when
a checkpoint exists to resume from: a snapshot of this job, or the checkpoint it was
restored from; otherwise it was merely killed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge.documents import JobDocument
from edge.fsproto import JobPaths
from edge.node.checkpoint import SnapshotResult, Snapshotter

log = logging.getLogger(__name__)


class Preemption:
    def __init__(
        self, snapshotter: Snapshotter, *, restored: bool, note: Callable[[str], None]
    ) -> None:
        self._snapshots = snapshotter
        self._restored = restored
        self._note = note
        self._final_taken = False

    def _handle(self, result: SnapshotResult | None) -> None:
        if result is None:
            return
        if result.outcome == "taken":
            log.info("checkpoint snapshot %s", result.path)
        elif result.outcome in ("refused", "error"):
            self._note(result.detail)

    def tick(self) -> None:
        """Called on every heartbeat: snapshot when the interval has passed."""
        self._handle(self._snapshots.tick())

    def on_stop_requested(self) -> None:
        """Called whenever the stop is polled: the final snapshot, once."""
        if not self._final_taken:
            self._final_taken = True
            self._handle(self._snapshots.snapshot())

    def finished(self) -> None:
        """After the payload ended by itself: snapshot its final state (for a job whose
        checkpoint later points start from)."""
        self._final_taken = True
        self._handle(self._snapshots.snapshot())

    def finish(self) -> bool:
        """After the payload stopped: snapshot what it saved on the way out; True if
        the job can be resumed from a checkpoint."""
        self._final_taken = True
        self._handle(self._snapshots.snapshot())
        return self._restored or self._snapshots.has_snapshot


def preemption_for(
    doc: JobDocument, paths: JobPaths, note: Callable[[str], None]
) -> Preemption | None:
    """The snapshot schedule of a job with checkpoints; None for a job without."""
    config, node = doc.spec.checkpoint_config, doc.node
    if config is None:
        return None
    restored = doc.spec.checkpoint is not None
    snapshotter = Snapshotter(
        paths.work,
        paths.checkpoints,
        config.save,
        interval_seconds=config.interval * node.checkpoint_unit_seconds,
        max_bytes=node.checkpoint_max_bytes,
        keep=node.checkpoint_keep,
        restored=restored,
    )
    return Preemption(snapshotter, restored=restored, note=note)
