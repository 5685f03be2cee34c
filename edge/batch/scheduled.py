"""What Slurm, LSF and PBS adapters share: the submit/poll/cancel skeleton.

Each adapter supplies its directive lines, how a script is handed to its submit command,
one status query for many ids, its cancel command and its multi-node launcher. The
skeleton writes the worker directory and its record, keeps malformed ids away from the
scheduler (one bad id can make a whole query fail), and turns a scheduler that cannot be
asked right now into ``unknown`` rather than an exception, since the harvester simply
asks again next scan.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from re import Pattern

from edge.batch.commands import CommandError, CommandResult, run_command
from edge.batch.options import ClassBatchOptions
from edge.batch.port import BatchState, BatchSubmitError
from edge.batch.script import (
    ScheduledBatchConfig,
    ScriptSettings,
    Worker,
    code_root,
    new_worker,
    render_script,
)
from edge.fsproto import write_json_atomic, write_text_atomic
from edge.node.layout import NodeLayout
from edge.workerproto import WorkerRecord
from shared.clock import utcnow

log = logging.getLogger(__name__)


class ScheduledBatch(ABC):
    """Base of the adapters that submit batch scripts to a scheduler."""

    kind: str
    directive_prefix: str
    job_id_variable: str
    id_pattern: Pattern[str]
    """What a batch id of this scheduler looks like; others are never sent to it."""

    def __init__(self, config: ScheduledBatchConfig, *, isolate_network: bool = False) -> None:
        self._config = config
        layout = self.node_layout()
        if isolate_network and layout.launches_ranks:
            raise ValueError(
                f"isolate_network cannot be used with layout {config.layout!r}: the launcher "
                "must reach the scheduler and the ranks each other over the network"
            )
        agent_args = ["--layout", layout.model_dump_json()] if layout.kind != "single" else []
        self._settings = ScriptSettings(
            shell=config.shell,
            directive_prefix=self.directive_prefix,
            job_id_variable=self.job_id_variable,
            python=config.python or sys.executable,
            setup=tuple(config.setup),
            launcher=tuple(config.launcher),
            pythonpath=str(code_root()) if config.export_code_root else None,
            isolate_network=isolate_network,
            agent_args=tuple(agent_args),
        )

    # -- what each adapter supplies ---------------------------------------------------

    @abstractmethod
    def directives(self, worker: Worker, options: ClassBatchOptions | None = None) -> list[str]:
        """The directive lines (option texts) of ``worker``'s script, extra ones last;
        ``options`` (of the job's compute class) replace or add to the config's.

        Raises UnsafeDirectiveError for a value that cannot be written there."""

    @abstractmethod
    def submit_script(self, worker: Worker, script: str) -> str:
        """Hand the written script to the scheduler; return the batch id.

        Raises BatchSubmitError (or CommandError) with the scheduler's own message."""

    @abstractmethod
    def query(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        """States of well-formed ids, from one scheduler query (two at most)."""

    @abstractmethod
    def cancel_argv(self, batch_id: str) -> list[str]: ...

    @abstractmethod
    def rank_launcher(self, tasks_per_node: int) -> list[str]:
        """The scheduler's default argv starting ``tasks_per_node`` processes on each
        node of the job (layouts ``multi_node`` and, with 1, ``elastic``)."""

    def starts_on_launch_node(self) -> bool:
        """The batch script runs on a launch node that is first in the host list but
        runs no rank (LSF on IBM CSM machines)."""
        return False

    def node_layout(self) -> NodeLayout:
        """What the agent is told about the site layout."""
        c = self._config
        launcher: list[str] = []
        if c.layout in ("multi_node", "elastic"):
            per_node = c.tasks_per_node if c.layout == "multi_node" else 1
            launcher = list(c.payload_launcher) or self.rank_launcher(per_node)
        return NodeLayout(
            kind=c.layout,
            gpus_per_node=c.gpus_per_node,
            nodes=c.nodes,
            min_nodes=c.min_nodes,
            tasks_per_node=c.tasks_per_node,
            launcher=launcher,
            torchrun=list(c.torchrun),
            master_port=c.master_port,
            skip_first_host=self.starts_on_launch_node(),
        )

    # -- the port -----------------------------------------------------------------------

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        return run_command(argv, timeout=self._config.command_timeout, stdin=stdin)

    def render(self, worker: Worker, options: ClassBatchOptions | None = None) -> str:
        return render_script(self._settings, worker, self.directives(worker, options))

    def submit(self, job_dir: Path, options: ClassBatchOptions | None = None) -> str:
        try:
            worker = new_worker(job_dir)
        except (ValueError, OSError) as exc:
            raise BatchSubmitError(f"cannot write the {self.kind} batch script: {exc}") from exc
        record = WorkerRecord(
            worker_id=worker.worker_id, kind=self.kind, jobs=[d.name for d in worker.job_dirs]
        )
        return self._submit(worker, record, options)

    def submit_worker(self, worker_dir: Path, options: ClassBatchOptions | None = None) -> str:
        """Submit the late-binding worker whose directory and record the harvester made,
        with its compute class's options; the harvester records the batch id itself."""
        worker = Worker(worker_dir.name, worker_dir, ())
        return self._submit(worker, None, options)

    def _submit(
        self, worker: Worker, record: WorkerRecord | None, options: ClassBatchOptions | None = None
    ) -> str:
        try:
            script = self.render(worker, options)
            write_text_atomic(worker.script, script)
        except (ValueError, OSError) as exc:  # UnsafeDirectiveError is a ValueError
            raise BatchSubmitError(f"cannot write the {self.kind} batch script: {exc}") from exc
        try:
            batch_id = self.submit_script(worker, script)
        except (BatchSubmitError, CommandError) as exc:
            if record is not None:
                record.error = str(exc)
                self._save(worker, record)
            if isinstance(exc, BatchSubmitError):
                raise
            raise BatchSubmitError(
                f"{exc} (if it timed out, the job may be queued all the same: see {worker.log})"
            ) from exc
        if record is not None:
            record.batch_id, record.submitted_at = batch_id, utcnow()
            self._save(worker, record)
        log.info("worker %s submitted to %s as %s", worker.worker_id, self.kind, batch_id)
        return batch_id

    def _save(self, worker: Worker, record: WorkerRecord) -> None:
        try:
            write_json_atomic(worker.record, record.model_dump(mode="json"))
        except OSError as exc:  # the batch id is what matters, and the harvester has it
            log.warning("cannot write %s: %s", worker.record, exc)

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        wanted = list(dict.fromkeys(batch_ids))
        valid = [b for b in wanted if self.id_pattern.fullmatch(b)]
        states: dict[str, BatchState] = {}
        for bad in wanted:
            if bad not in valid:
                # It can never become a job of this scheduler (e.g. an id of another kind).
                log.warning("%r is not a %s batch id: reported as done", bad, self.kind)
                states[bad] = "done"
        if valid:
            try:
                states.update(self.query(valid))
            except CommandError as exc:
                log.warning("%s poll failed, states unknown this time: %s", self.kind, exc)
        return {b: states.get(b, "unknown") for b in batch_ids}

    def cancel(self, batch_id: str) -> None:
        if not self.id_pattern.fullmatch(batch_id):
            return
        try:
            result = self.run(self.cancel_argv(batch_id))
        except CommandError as exc:
            log.warning("cancel of %s %s failed: %s", self.kind, batch_id, exc)
            return
        if not result.ok:  # usually: it has ended already
            log.info("cancel of %s %s: %s", self.kind, batch_id, result.describe())
