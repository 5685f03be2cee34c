"""The ``sge`` batch system (Grid Engine: Son of Grid Engine 8.1, as Debian ships it, and
its relatives): each edge job runs as one Grid Engine job, or (layout ``per_gpu``) one
job per node runs a late-binding worker.

Submits with ``qsub -terse batch.sh`` (options on ``#$`` lines), which prints the bare
job id. Polls with one ``qstat -u '*' -xml`` for all ids: Grid Engine drops a job from
qstat the moment it ends, so an id it no longer lists is done. A job in an error state
(``Eqw``: the execution host could not start it, e.g. an unwritable log path) never runs
without an administrator's ``qmod -cj``, so it counts as done too, and the harvester
fails the job as lost with what ``batch.log`` says. Cancels with ``qdel``, on which Grid
Engine kills the job with SIGKILL unless the queue's ``terminate_method`` is ``SIGTERM``
(set that, as the dev cluster does, so the agent can stop the payload and save a last
checkpoint); the walltime (``h_rt``) ends a job with SIGKILL too.

Supports: queue (``-q``), account (``-A``), walltime (``-l h_rt=H:MM:SS``), GPUs per job
(``-l gpu=N``, a consumable the site defines: ``gpu INT <= YES YES 0 0`` in ``qconf
-mc`` and ``complex_values gpu=N`` on each execution host), the shell (``-S``), extra
``#$`` lines, set-up lines, the nodes' python, a launcher, ``unshare -n`` isolation, and
not rerunnable (``-r n``) unless ``requeue`` is set; per compute class, a queue, account
and extra lines (:mod:`edge.batch.options`). The scheduler's output is joined
into ``batch.log`` (``-j y``).

Layouts: ``single``, ``per_gpu`` (one job holding ``gpus_per_node`` GPUs) and
``whole_node`` (``-l exclusive=true``, which needs the site's boolean ``exclusive``
complex with relation ``EXCL``). Grid Engine 8.1 *counts* GPUs but does not say which
ones a job got (no ``CUDA_VISIBLE_DEVICES``, no RSMAP as in Univa's releases): a
``per_gpu`` worker numbers its slots 0..N-1, so give it whole nodes (``whole_node``-style
``directives = ["-l exclusive=true"]``), or set ``CUDA_VISIBLE_DEVICES`` in a queue
prolog. ``multi_node`` and ``elastic`` are refused: they would need a parallel
environment and a rank mapping of ``PE_HOSTFILE`` that is not built yet.

Tested against a real one-node Grid Engine 8.1.9 (``deploy/dev/sge.py`` starts it).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Literal

from pydantic import model_validator

from edge.batch.options import ClassBatchOptions
from edge.batch.port import BatchState, BatchSubmitError
from edge.batch.scheduled import ScheduledBatch
from edge.batch.script import (
    DirectiveName,
    ScheduledBatchConfig,
    Worker,
    directive_value,
    format_hms,
)

log = logging.getLogger(__name__)

RUNNING_LETTERS = frozenset("qwhrtRsSTd")
"""Letters of a live job's state (``qw``, ``hqw``, ``r``, ``t``, ``Rr``, ``s``, ``dr`` ...);
``d`` (being deleted) keeps a job running until its script has ended."""


class SgeBatchConfig(ScheduledBatchConfig):
    kind: Literal["sge"] = "sge"
    queue: DirectiveName | None = None

    @model_validator(mode="after")
    def _expressible(self) -> SgeBatchConfig:
        if self.layout in ("multi_node", "elastic"):
            raise ValueError(
                f"layout {self.layout!r} is not supported with Grid Engine yet: use "
                "'single', 'per_gpu' or 'whole_node'"
            )
        if self.nodes != 1:
            raise ValueError("a Grid Engine job of these layouts runs on one node: nodes = 1")
        return self


def sge_state(state: str) -> BatchState:
    """Map a qstat state (``qw``, ``r``, ``Eqw`` ...)."""
    state = state.strip()
    if not state:
        return "unknown"
    if "E" in state:
        return "done"
    if all(letter in RUNNING_LETTERS for letter in state):
        return "running"
    return "unknown"


def parse_qsub_terse(stdout: str) -> str | None:
    """The id ``qsub -terse`` prints (``ID``, or ``ID.FIRST-LAST:STEP`` for arrays)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    job_id = lines[-1].split(".", 1)[0]
    return job_id if job_id.isdigit() else None


def parse_qstat_xml(stdout: str) -> dict[str, str] | None:
    """Job number -> state of ``qstat -xml``; None if the output is not that XML."""
    try:
        doc = ET.fromstring(stdout)  # noqa: S314 - the site's own scheduler, not user input
    except ET.ParseError:
        return None
    states: dict[str, str] = {}
    for job in doc.iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        if number:
            states.setdefault(number, (job.findtext("state") or "").strip())
    return states


class SgeBatch(ScheduledBatch):
    kind = "sge"
    directive_prefix = "#$"
    job_id_variable = "JOB_ID"
    id_pattern = re.compile(r"[0-9]+")

    def __init__(self, config: SgeBatchConfig, *, isolate_network: bool = False) -> None:
        self.config = config  # before the base, which asks for the launcher
        super().__init__(config, isolate_network=isolate_network)

    def directives(self, worker: Worker, options: ClassBatchOptions | None = None) -> list[str]:
        c, o = self.config, options or ClassBatchOptions()
        lines = [
            f"-N {directive_value(worker.name, 'job name')}",
            f"-o {directive_value(worker.log, 'batch log path')}",
            "-j y",
            f"-S {directive_value(c.shell, 'shell')}",
        ]
        if o.queue or c.queue:
            lines.append(f"-q {o.queue or c.queue}")
        if o.account or c.account:
            lines.append(f"-A {o.account or c.account}")
        if c.walltime is not None:
            lines.append(f"-l h_rt={format_hms(c.walltime)}")
        if c.gpus_per_node:
            lines.append(f"-l gpu={c.gpus_per_node}")
        if c.layout == "whole_node":
            lines.append("-l exclusive=true")
        lines.append("-r y" if c.requeue else "-r n")
        return lines + c.directives + o.directives

    def submit_script(self, worker: Worker, script: str) -> str:
        result = self.run(["qsub", "-terse", str(worker.script)])
        batch_id = parse_qsub_terse(result.stdout) if result.ok else None
        if batch_id is None:
            raise BatchSubmitError(f"qsub refused the job: {result.describe()}")
        return batch_id

    def query(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        result = self.run(["qstat", "-u", "*", "-xml"])
        listed = parse_qstat_xml(result.stdout) if result.ok else None
        if listed is None:
            log.warning("qstat failed, states unknown this time: %s", result.describe())
            return {}
        return {b: sge_state(listed[b]) if b in listed else "done" for b in batch_ids}

    def cancel_argv(self, batch_id: str) -> list[str]:
        return ["qdel", batch_id]

    def rank_launcher(self, tasks_per_node: int) -> list[str]:
        raise ValueError("Grid Engine runs no multi-node layout yet")  # refused by the config
