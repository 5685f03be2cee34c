"""The harvester's late-binding workers (layout 1): read, decide, act, every scan.

Nothing here lives only in memory except idleness timers and "done" counters, which are
safe to lose: which worker holds which job is the set of ``inbox/`` and ``claimed/``
entries under ``workers/`` (:mod:`edge.workerproto`), read again on every step, so a
harvester killed at any point and restarted neither loses a job nor runs one twice. An
entry is written only for a job found in no inbox and no ``claimed/``, and taken back
only by a rename that fails if the worker claimed it first.

A worker is submitted after its record (with the agent's settings) is written and before
its batch id is known; a harvester killed in between leaves a worker without batch id,
which is used if its agent starts and counted as ended once its record is older than the
lost-job limit without a heartbeat.

Compute classes with batch options of their own (a partition, a QOS...) get workers
of their own, submitted with those options: a job is dispatched only to a worker of its
class, and each class's workers are planned apart (:func:`edge.harvester.dispatch.plan`),
all of them within the site's ``slots``. Jobs of classes without options, or of none,
share the workers submitted with the ``[batch]`` table alone.

Blocking (file system and batch commands): the daemon calls :meth:`WorkerPool.step`
in a worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge.batch import BatchState, BatchSubmitError, BatchSystem
from edge.batch.options import ClassBatchOptions
from edge.batch.script import new_late_worker
from edge.classes import class_batch_options
from edge.config import SiteConfig
from edge.fsproto import file_age
from edge.harvester.dispatch import Plan, WorkerPhase, WorkerView, plan, to_withdraw
from edge.workerproto import (
    WORKERS_DIR,
    WorkerPaths,
    WorkerRecord,
    WorkerSettings,
    WorkerStatus,
    dispatch,
    entries,
    retire_claim,
    withdraw,
)
from shared.clock import utcnow

log = logging.getLogger(__name__)

DONE_POLLS_BEFORE_ENDED = 2


@dataclass
class PoolWorker:
    paths: WorkerPaths
    record: WorkerRecord
    status: WorkerStatus | None = None
    inbox: tuple[str, ...] = ()
    claimed: tuple[str, ...] = ()
    phase: WorkerPhase = "pending"
    done_polls: int = 0
    idle_since: float = field(default_factory=time.monotonic)

    @property
    def slots(self) -> int:
        return self.record.settings.slots if self.record.settings else 1


@dataclass
class StepResult:
    failed: dict[str, str] = field(default_factory=dict)
    """Jobs no worker could be submitted for, with the batch system's reason."""
    taken_back: list[str] = field(default_factory=list)
    """Jobs with a kill request that no slot had claimed: they will never run."""


class WorkerPool:
    def __init__(
        self,
        root: Path,
        batch: BatchSystem,
        settings: WorkerSettings,
        *,
        max_slots: int,
        queue_per_slot: int,
        lost_after: float,
        options_of: Callable[[str | None], ClassBatchOptions | None] = lambda _: None,
    ) -> None:
        self.root = root
        self.options_of = options_of
        """The batch options of a compute class (None: it has none)."""
        self.batch = batch
        self.settings = settings
        self.max_slots = max_slots
        self.queue_per_slot = queue_per_slot
        self.lost_after = lost_after
        self.workers: dict[str, PoolWorker] = {}
        self.location: dict[str, tuple[str, bool]] = {}
        """job_id -> (worker_id, claimed) for every entry of the known workers."""

    def load(self) -> None:
        """The late-binding workers not retired yet, from their directories."""
        directory = self.root / WORKERS_DIR
        if not directory.is_dir():
            return
        for entry in sorted(directory.iterdir()):
            paths = WorkerPaths(entry)
            record = paths.read_record()
            if record is None or record.layout != "per_gpu" or record.retired:
                continue
            self.workers[record.worker_id] = PoolWorker(paths, record)
        log.info("%d late-binding worker(s) not retired", len(self.workers))

    # -- reading ------------------------------------------------------------------------

    def _phase(self, worker: PoolWorker, state: BatchState) -> WorkerPhase:
        worker.done_polls = worker.done_polls + 1 if state == "done" else 0
        status = worker.status
        if status is not None and status.state == "exited":
            return "ended"
        if worker.done_polls >= DONE_POLLS_BEFORE_ENDED:
            return "ended"
        beat = file_age(worker.paths.heartbeat)
        if status is not None:
            if beat is not None and beat > self.lost_after:
                log.warning("worker %s: no heartbeat for %.0f s", worker.paths.worker_id, beat)
                if worker.record.batch_id:
                    self.batch.cancel(worker.record.batch_id)
                return "ended"
            return "live" if status.accepting else "draining"
        if worker.record.batch_id is None and beat is None:
            age = file_age(worker.paths.record)
            if age is None or age > self.lost_after:
                return "ended"
        return "pending"

    def refresh(self) -> None:
        ids = [w.record.batch_id for w in self.workers.values() if w.record.batch_id]
        states = self.batch.poll(ids) if ids else {}
        self.location = {}
        now = time.monotonic()
        for worker in self.workers.values():
            worker.status = worker.paths.read_status()
            worker.inbox = tuple(entries(worker.paths.inbox))
            worker.claimed = tuple(entries(worker.paths.claimed))
            worker.phase = self._phase(worker, states.get(worker.record.batch_id or "", "unknown"))
            for job_id in worker.claimed:
                self.location[job_id] = (worker.paths.worker_id, True)
            for job_id in worker.inbox:
                self.location[job_id] = (worker.paths.worker_id, False)
            if worker.inbox or (worker.status and any(s.job_id for s in worker.status.slots)):
                worker.idle_since = now

    def job_state(self, job_id: str) -> BatchState:
        """The batch state that stands for ``job_id`` in the lost-job rules: ``done``
        once the worker that claimed it has ended, else ``running`` (queued or waiting
        for a worker counts as running)."""
        where = self.location.get(job_id)
        if where is not None and where[1] and self.workers[where[0]].phase == "ended":
            return "done"
        return "running"

    # -- acting -------------------------------------------------------------------------

    def forget(self, job_id: str) -> None:
        """Hide the ``claimed/`` entries of an earlier, reported attempt of ``job_id``
        before it is staged afresh (they are kept, renamed, for the record)."""
        for worker in self.workers.values():
            if retire_claim(worker.paths, job_id):
                log.info(
                    "job %s: claim of an earlier attempt in %s set aside",
                    job_id,
                    worker.paths.worker_id,
                )
        self.location.pop(job_id, None)

    def _take_back(self, job_id: str) -> bool:
        """Withdraw ``job_id`` from the inbox it waits in (True if it waited in none);
        False if a slot claimed it. Only right after :meth:`refresh`."""
        where = self.location.get(job_id)
        if where is None:
            return True
        worker_id, claimed = where
        return not claimed and self._withdraw(worker_id, job_id)

    def _withdraw(self, worker_id: str, job_id: str) -> bool:
        worker = self.workers[worker_id]
        if not withdraw(worker.paths, job_id):
            return False
        log.info("job %s taken back from worker %s", job_id, worker_id)
        worker.inbox = tuple(j for j in worker.inbox if j != job_id)
        del self.location[job_id]
        return True

    def group(self, compute_class: str | None) -> str | None:
        """The workers a job of ``compute_class`` may go to: the class's own if it has
        batch options, else (None) those submitted with the ``[batch]`` table alone."""
        options = self.options_of(compute_class)
        return compute_class if options is not None and options.set_fields() else None

    def _views(self, active: Mapping[str, object]) -> list[WorkerView]:
        now = time.monotonic()
        return [
            WorkerView(
                worker_id=wid,
                slots=w.slots,
                phase=w.phase,
                released=w.record.released,
                running=sum(job in active for job in w.claimed),
                queued=w.inbox,
                idle_for=now - w.idle_since,
            )
            for wid, w in self.workers.items()
        ]

    def step(
        self,
        active: Mapping[str, object],
        killed: frozenset[str],
        expected: Mapping[str, float | None] | None = None,
        classes: Mapping[str, str | None] | None = None,
    ) -> StepResult:
        """One pass for the active jobs (``killed``: those with a kill request, which
        are taken back if no slot claimed them, and never dispatched; ``expected``: the
        jobs' expected run times, where known, written into their inbox entries;
        ``classes``: the compute class of each job, where the broker chose one)."""
        result = StepResult()
        self.refresh()
        result.taken_back = [job for job in killed if job in active and self._take_back(job)]
        for job_id, worker_id in to_withdraw(self._views(active)):
            self._withdraw(worker_id, job_id)
        self._retire(active)
        gone = set(result.taken_back)
        waiting = [j for j in active if j not in self.location and j not in killed]
        active = {j: v for j, v in active.items() if j not in gone}
        groups: dict[str | None, list[str]] = {
            self.group(w.record.compute_class): [] for w in self.workers.values()
        }
        for job_id in waiting:
            groups.setdefault(self.group((classes or {}).get(job_id)), []).append(job_id)
        for group in sorted(groups, key=lambda g: (g is not None, g or "")):
            self._step_group(group, active, groups[group], expected or {}, result)
        return result

    def _step_group(
        self,
        group: str | None,
        active: Mapping[str, object],
        waiting: list[str],
        expected: Mapping[str, float | None],
        result: StepResult,
    ) -> None:
        """Dispatch the waiting jobs of one group to its workers, submitting or
        releasing workers of that group."""
        decided = self._plan(active, waiting, group)
        for _ in range(decided.submit):
            try:
                self._submit(group)
            except BatchSubmitError as exc:
                for job_id in waiting:
                    result.failed[job_id] = f"the site could not submit a worker: {exc}"
                return
        if decided.submit:
            decided = self._plan(active, waiting, group)
        for job_id, worker_id in decided.assign:
            dispatch(self.workers[worker_id].paths, job_id, expected.get(job_id))
            self.location[job_id] = (worker_id, False)
            self.workers[worker_id].inbox += (job_id,)
            log.info("job %s dispatched to worker %s", job_id, worker_id)
        for worker_id in decided.release:
            self._release(self.workers[worker_id])

    def _plan(self, active: Mapping[str, object], waiting: list[str], group: str | None) -> Plan:
        """The plan of one group's workers, within the slots the other groups' workers
        do not hold."""
        others = sum(
            w.slots
            for w in self.workers.values()
            if w.phase != "ended" and self.group(w.record.compute_class) != group
        )
        views = [
            v
            for v in self._views(active)
            if self.group(self.workers[v.worker_id].record.compute_class) == group
        ]
        return plan(
            views,
            waiting,
            queue_per_slot=self.queue_per_slot,
            max_slots=max(0, self.max_slots - others),
            slots_per_worker=self.settings.slots,
            release_after=self.settings.idle_seconds,
        )

    def _submit(self, group: str | None = None) -> None:
        worker = new_late_worker(self.root)
        paths = WorkerPaths(worker.dir)
        record = WorkerRecord(
            worker_id=worker.worker_id,
            kind=self.batch.kind,
            layout="per_gpu",
            settings=self.settings,
            compute_class=group,
        )
        paths.save_record(record)
        try:
            record.batch_id = self.batch.submit_worker(worker.dir, self.options_of(group))
        except BatchSubmitError as exc:
            record.error, record.retired = str(exc), True
            paths.save_record(record)
            raise
        record.submitted_at = utcnow()
        paths.save_record(record)
        self.workers[worker.worker_id] = PoolWorker(paths, record)
        log.info(
            "worker %s%s submitted as %s",
            worker.worker_id,
            f" (class {group})" if group else "",
            record.batch_id,
        )

    def _release(self, worker: PoolWorker) -> None:
        log.info("worker %s has nothing to run: released", worker.paths.worker_id)
        worker.record.released = True
        worker.paths.save_record(worker.record)
        if worker.record.batch_id:
            self.batch.cancel(worker.record.batch_id)

    def _retire(self, active: Mapping[str, object]) -> None:
        for worker_id, worker in list(self.workers.items()):
            if worker.phase != "ended" or worker.inbox:
                continue
            if any(job in active for job in worker.claimed):
                continue  # the scan still has to report it
            worker.record.retired = True
            worker.paths.save_record(worker.record)
            del self.workers[worker_id]


def late_binding_pool(config: SiteConfig, batch: BatchSystem) -> WorkerPool:
    """The pool of a site whose batch layout is ``per_gpu``."""
    late = config.late_binding
    walltime = config.batch.walltime
    settings = WorkerSettings(
        slots=config.batch.gpus_per_node,
        walltime_seconds=walltime.total_seconds() if walltime is not None else None,
        expected_job_seconds=late.expected_job_seconds,
        idle_seconds=late.idle_seconds,
        heartbeat_interval=config.heartbeat_interval,
        poll_interval=late.poll_interval,
    )
    return WorkerPool(
        config.root,
        batch,
        settings,
        max_slots=config.slots,
        queue_per_slot=late.queue_per_slot,
        lost_after=config.lost_after_seconds,
        options_of=lambda name: class_batch_options(config, name),
    )
