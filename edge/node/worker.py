"""The late-binding worker agent (layout 1): one payload slot per GPU of the node.

It is what a ``per_gpu`` batch job executes (``python -m edge.node run-worker DIR``).
Each slot owns one GPU of the allocation and runs one job at a time through the
ordinary :class:`~edge.node.agent.NodeAgent`, so a job's ``status.json``, ``heartbeat``
and ``kill`` files behave exactly as under a one-job batch job; the slot only adds
``CUDA_VISIBLE_DEVICES=<its GPU>``. A free slot claims (:func:`edge.workerproto.claim`)
the inbox entry with the longest expected duration that fits in the walltime left, the
oldest among equals; a slot's first job is always taken, since the allocation was made
for it. Longest first, because the end of a run of jobs (or of an allocation) is
where slots idle: with the long jobs started early, the short ones fill the slots at
the end and they finish close together.

Expected duration: the one the job's inbox entry carries when the central service
knows it (the mean run time of the task's finished jobs on this site and class);
otherwise the longest run of a job that *finished* on this worker, or the site's
``expected_job_seconds`` until one has. The longest rather than the mean there, because
starting a job that the walltime then kills wastes the whole job, while declining one
wastes only the end of the allocation.

The worker exits when nothing runs and the inbox stayed empty for ``idle_seconds``, or
when nothing runs and no job fits in the walltime left; on SIGTERM (scancel, walltime)
every slot stops its payload as the single agent does, then the worker exits. Entries it
leaves in the inbox are the harvester's to dispatch elsewhere.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from edge.fsproto import JOBS_DIR, touch, write_json_atomic
from edge.node.agent import NodeAgent
from edge.workerproto import (
    SlotStatus,
    WorkerPaths,
    WorkerSettings,
    WorkerState,
    WorkerStatus,
    claim,
    entries,
    expected_seconds,
    unclaim,
)
from shared.clock import utcnow
from shared.config import LogSettings, load
from shared.logs import setup_logging

log = logging.getLogger(__name__)

GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS")


def gpu_ids(environ: Mapping[str, str], wanted: int) -> list[str]:
    """The allocation's GPU ids, from the first of GPU_VARIABLES that is set, else
    ``0..wanted-1``; at most ``wanted`` of them."""
    for name in GPU_VARIABLES:
        ids = [g.strip() for g in environ.get(name, "").split(",") if g.strip()]
        if ids:
            if len(ids) < wanted:
                log.warning("%s lists %d GPU(s), fewer than %d slots", name, len(ids), wanted)
            return ids[:wanted]
    return [str(i) for i in range(wanted)]


@dataclass
class DurationEstimate:
    """Expected job duration: the longest finished run seen, else the site's default."""

    default: float
    observed: list[float] = field(default_factory=list)

    def expected(self) -> float:
        return max(self.observed) if self.observed else self.default

    def add(self, seconds: float) -> None:
        self.observed.append(seconds)


@dataclass
class Slot:
    gpu: str
    job_id: str | None = None
    agent: NodeAgent | None = None
    thread: threading.Thread | None = None
    started: float = 0.0
    jobs_run: int = 0

    @property
    def busy(self) -> bool:
        return self.job_id is not None


class WorkerAgent:
    def __init__(
        self,
        worker_dir: Path,
        settings: WorkerSettings,
        *,
        environ: Mapping[str, str],
        host: str | None = None,
    ) -> None:
        self.paths = WorkerPaths(worker_dir.resolve())
        self.jobs_dir = self.paths.dir.parent.parent / JOBS_DIR
        self.settings = settings
        self.slots = [Slot(gpu) for gpu in gpu_ids(environ, settings.slots)]
        self.estimate = DurationEstimate(settings.expected_job_seconds)
        started = environ.get("HPO_WORKER_STARTED", "")
        self.started_at = (
            datetime.fromtimestamp(int(started), UTC) if started.isdigit() else utcnow()
        )
        self.walltime_end = (
            None
            if settings.walltime_seconds is None
            else self.started_at + timedelta(seconds=settings.walltime_seconds)
        )
        ids = (environ.get(n) for n in ("SLURM_JOB_ID", "LSB_JOBID", "PBS_JOBID", "JOB_ID"))
        self.batch_id = next((i for i in ids if i), "?")  # JOB_ID: Grid Engine's
        self.host = host or socket.gethostname()
        self._stop: str | None = None
        self._lock = threading.RLock()  # also taken by the signal handler
        self._ended = threading.Event()
        self._last_status: WorkerStatus | None = None
        self._shortest_waiting: float | None = None
        """The shortest expected run in the inbox when all its jobs have one."""

    # -- signals ------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """From a signal handler: claim nothing more, stop every running payload."""
        self._stop = reason
        with self._lock:
            for slot in self.slots:
                if slot.agent is not None:
                    slot.agent.request_stop(reason)
        self._ended.set()

    # -- decisions ----------------------------------------------------------------------

    def remaining(self) -> float | None:
        if self.walltime_end is None:
            return None
        return (self.walltime_end - utcnow()).total_seconds()

    def fits(self, slot: Slot, expected: float | None = None) -> bool:
        """May ``slot`` start a job expected to run ``expected`` seconds (None: the
        worker's own estimate) now?"""
        left = self.remaining()
        needed = self.estimate.expected() if expected is None else expected
        return slot.jobs_run == 0 or left is None or left >= needed

    def state(self) -> WorkerState:
        if self._stop is not None:
            return "draining"
        if any(self.fits(s, self._shortest_waiting) for s in self.slots):
            return "running"
        return "draining"

    def waiting(self) -> list[tuple[str, float | None]]:
        """The inbox, in the order slots take it: the longest expected run first (a job
        without a known run time counts as the worker's estimate), the oldest first
        among equals. Starting the long jobs first leaves the short ones to fill the
        slots at the end, so the slots finish together rather than one by one."""
        found = [(j, expected_seconds(self.paths, j)) for j in entries(self.paths.inbox)]
        known = [e for _, e in found if e is not None]
        self._shortest_waiting = min(known) if known and len(known) == len(found) else None
        default = self.estimate.expected()
        return sorted(found, key=lambda entry: -(default if entry[1] is None else entry[1]))

    # -- slots --------------------------------------------------------------------------

    def _start(self, slot: Slot, job_id: str) -> None:
        job_dir = self.jobs_dir / job_id
        note = (
            f"hpo-relay: job claimed by worker {self.paths.worker_id} (batch job "
            f"{self.batch_id}) on {self.host}, slot GPU {slot.gpu}\n"
        )
        try:
            with open(job_dir / "agent.log", "a") as handle:
                handle.write(note)
        except OSError as exc:
            log.warning("job %s: cannot write agent.log: %s", job_id, exc)
        agent = NodeAgent(job_dir, host=self.host, gpus=[slot.gpu])
        slot.job_id, slot.agent, slot.started = job_id, agent, time.monotonic()
        slot.jobs_run += 1
        slot.thread = threading.Thread(
            target=self._run_slot, args=(agent,), name=f"slot-{slot.gpu}", daemon=True
        )
        log.info("slot GPU %s: job %s", slot.gpu, job_id)
        slot.thread.start()

    def _run_slot(self, agent: NodeAgent) -> None:
        try:
            agent.run()
        except Exception as exc:  # a bug: the admin gets the traceback in agent.log
            log.exception("node agent of job %s failed", agent.paths.job_id)
            try:
                agent.fail_internally(exc)
            except OSError:
                log.exception("job %s: cannot write its status", agent.paths.job_id)
        finally:
            self._ended.set()

    def _reap(self) -> bool:
        """Free the slots whose job ended; True if any did."""
        freed = False
        with self._lock:
            for slot in self.slots:
                if slot.thread is None or slot.thread.is_alive():
                    continue
                assert slot.agent is not None
                if slot.agent.state == "finished":
                    self.estimate.add(time.monotonic() - slot.started)
                slot.job_id, slot.agent, slot.thread = None, None, None
                freed = True
        return freed

    def _claim_for_free_slots(self) -> None:
        free = [s for s in self.slots if not s.busy]
        if not free:
            return
        waiting = self.waiting()
        for slot in free:
            for job_id, expected in list(waiting):
                if not self.fits(slot, expected):
                    continue  # a shorter one further down may still fit
                waiting.remove((job_id, expected))
                if claim(self.paths, job_id):
                    with self._lock:
                        if self._stop is not None:  # a signal came while claiming
                            unclaim(self.paths, job_id)
                            return
                        self._start(slot, job_id)
                    break

    # -- status -------------------------------------------------------------------------

    def _write_status(self, state: WorkerState, reason: str = "", *, force: bool = False) -> None:
        """Write status.json when it changed (or ``force``): a shared filesystem pays
        for every write."""
        status = WorkerStatus(
            state=state,
            host=self.host,
            pid=os.getpid(),
            slots=[SlotStatus(gpu=s.gpu, job_id=s.job_id, jobs_run=s.jobs_run) for s in self.slots],
            started_at=self.started_at,
            walltime_end=self.walltime_end,
            expected_job_seconds=self.estimate.expected(),
            reason=reason,
        )
        if status == self._last_status and not force:
            return
        write_json_atomic(self.paths.status, status.model_dump(mode="json"))
        self._last_status = status

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        s = self.settings
        log.info(
            "worker %s on %s: %d slot(s) (GPUs %s), walltime end %s",
            self.paths.worker_id,
            self.host,
            len(self.slots),
            ",".join(slot.gpu for slot in self.slots),
            self.walltime_end or "unknown",
        )
        idle_since = time.monotonic()
        next_beat = 0.0
        reason = ""
        while True:
            self._ended.clear()
            self._reap()
            if self._stop is None:
                self._claim_for_free_slots()
            running = any(slot.busy for slot in self.slots)
            now = time.monotonic()
            if running or entries(self.paths.inbox):
                idle_since = now
            if not running:
                if self._stop is not None:
                    reason = self._stop
                    break
                if now - idle_since >= s.idle_seconds:
                    reason = f"idle for {s.idle_seconds:.0f} s"
                    break
                if self.state() == "draining":
                    reason = "the walltime left is shorter than a job is expected to take"
                    break
            beat = now >= next_beat
            if beat:
                touch(self.paths.heartbeat)
                next_beat = now + s.heartbeat_interval
            self._write_status(self.state(), force=beat)
            self._ended.wait(s.poll_interval)
        self._write_status("exited", reason, force=True)
        touch(self.paths.heartbeat)
        log.info("worker %s exits: %s", self.paths.worker_id, reason)
        return 0


def main(worker_dir: str) -> int:
    """Entry point of ``python -m edge.node run-worker WORKER_DIR``."""
    setup_logging(load(LogSettings))
    paths = WorkerPaths(Path(worker_dir))
    record = paths.read_record()
    if record is None or record.settings is None:
        log.error("%s is missing or has no worker settings: nothing to run", paths.record)
        return 2
    worker = WorkerAgent(paths.dir, record.settings, environ=os.environ)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        worker.request_stop(f"worker agent received {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    return worker.run()


__all__ = ["DurationEstimate", "WorkerAgent", "gpu_ids", "main"]
