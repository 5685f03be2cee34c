"""The ``pbs`` batch system (OpenPBS / PBS Professional; Torque with ``resources =
"nodes"`` and ``qstat_format = "plain"``): each edge job runs as one PBS job.

**Contract-tested only.** No PBS server can be installed where hpo-relay is developed, so
this adapter is tested against recording stand-ins of ``qsub``, ``qstat`` and ``qdel``
that answer in the formats of OpenPBS (its ``qstat.c`` and error messages; the list is
in ``tests/unit/edge/batch/fakehpc.py``). Try it on a real cluster before relying on it,
and report what differs.

Submits with ``qsub batch.sh`` (options on ``#PBS`` lines) and takes the id it prints
(``SEQ.SERVER``). Polls every id with one ``qstat -f -F json ID...`` (PBS Professional
19 and later, OpenPBS) or, with ``qstat_format = "plain"``, one plain ``qstat ID...``
(any PBS, Torque included). Ids are matched on their sequence number, since the plain
listing truncates long ids. An id qstat calls ``Unknown Job Id`` or ``Job has finished``
counts as done; one it does not mention at all as unknown. Cancels with ``qdel``.

Supports: queue, account (``-A``), walltime (``-l walltime=H:MM:SS``), nodes and GPUs
(``-l select=N:ngpus=G`` with ``place=scatter`` for several nodes; Torque's
``-l nodes=N:gpus=G``), the shell (``-S``: Torque ignores the ``#!`` line), extra ``#PBS``
lines, set-up lines (the script changes to the worker directory itself: PBS starts jobs
in ``$HOME``), the nodes' python, a launcher, ``unshare -n`` isolation, and not
rerunnable (``-r n``) unless ``requeue`` is set; per compute class, a queue, account and
extra lines (:mod:`edge.batch.options`). The scheduler's own output is joined
into ``batch.log`` (``-j oe``); PBS copies it there when the job ends, while
``agent.log`` is written live.

Layouts: ``whole_node`` adds ``-l place=excl`` (Torque: ``-n``); ``multi_node`` asks
for ``mpiprocs=T`` per chunk (Torque: ``ppn=T``), so ``PBS_NODEFILE`` lists every host T
times, and starts the ranks with ``mpirun -n N*T -ppn T`` (the spelling of MPICH,
Intel MPI and Cray's ``mpiexec``; Open MPI sites set ``payload_launcher``, e.g.
``["mpirun", "-np", "8", "--map-by", "ppr:4:node"]``); ``elastic`` does the same with
one process per node, which runs torchrun.

Does not support (yet): several agents per batch job, job arrays.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

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

RUNNING_STATES = frozenset({"Q", "H", "W", "T", "S", "U", "R", "B"})
DONE_STATES = frozenset({"E", "F", "X", "C"})  # E: exiting after the script ended
# M (moved to another server) stays unknown.

ENDED_MESSAGES = ("Unknown Job Id", "Job has finished")


class PbsBatchConfig(ScheduledBatchConfig):
    kind: Literal["pbs"] = "pbs"
    queue: DirectiveName | None = None
    resources: Literal["select", "nodes"] = "select"
    """``select``: PBS Professional / OpenPBS chunks; ``nodes``: Torque's syntax."""
    qstat_format: Literal["json", "plain"] = "json"


def pbs_state(state: str) -> BatchState:
    """Map a ``job_state`` / ``S`` column value."""
    state = state.strip().upper()
    if state in RUNNING_STATES:
        return "running"
    if state in DONE_STATES:
        return "done"
    return "unknown"


def sequence(batch_id: str) -> str:
    """``1234`` of ``1234.server.example.org``."""
    return batch_id.split(".", 1)[0]


def parse_qsub(stdout: str) -> str | None:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if lines and re.fullmatch(r"[0-9]+(\.[A-Za-z0-9_.-]+)?", lines[-1]):
        return lines[-1]
    return None


def parse_qstat_json(stdout: str) -> dict[str, str] | None:
    """Sequence number → job_state from ``qstat -f -F json``; None if it is not that."""
    try:
        doc: Any = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    jobs = doc.get("Jobs") or {}
    if not isinstance(jobs, dict):
        return None
    return {
        sequence(job_id): str(attrs.get("job_state", ""))
        for job_id, attrs in jobs.items()
        if isinstance(attrs, dict)
    }


def parse_qstat_plain(stdout: str) -> dict[str, str]:
    """Sequence number → state from the plain listing (``Job id  Name  User  Time Use
    S  Queue``; long ids are truncated with ``*``)."""
    states: dict[str, str] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[0][:1].isdigit():
            states.setdefault(sequence(fields[0].rstrip("*")), fields[-2])
    return states


def ended(stderr: str) -> set[str]:
    """Sequence numbers qstat says are unknown or finished."""
    found: set[str] = set()
    for line in stderr.splitlines():
        if any(message in line for message in ENDED_MESSAGES):
            for token in line.replace(",", " ").split():
                if re.fullmatch(r"[0-9]+(\..*)?", token):
                    found.add(sequence(token))
    return found


class PbsBatch(ScheduledBatch):
    kind = "pbs"
    directive_prefix = "#PBS"
    job_id_variable = "PBS_JOBID"
    id_pattern = re.compile(r"[0-9]+(\.[A-Za-z0-9_.-]+)?")

    def __init__(self, config: PbsBatchConfig, *, isolate_network: bool = False) -> None:
        self.config = config  # before the base, which asks for the launcher
        super().__init__(config, isolate_network=isolate_network)

    def directives(self, worker: Worker, options: ClassBatchOptions | None = None) -> list[str]:
        c, o = self.config, options or ClassBatchOptions()
        lines = [
            f"-N {directive_value(worker.name, 'job name')}",
            f"-o {directive_value(worker.log, 'batch log path')}",
            "-j oe",
            f"-S {directive_value(c.shell, 'shell')}",  # Torque ignores the #! line
        ]
        if o.queue or c.queue:
            lines.append(f"-q {o.queue or c.queue}")
        if o.account or c.account:
            lines.append(f"-A {o.account or c.account}")
        if c.walltime is not None:
            lines.append(f"-l walltime={format_hms(c.walltime)}")
        ranks = c.layout in ("multi_node", "elastic")
        per_node = c.tasks_per_node if c.layout == "multi_node" else 1
        if c.resources == "select":
            gpus = f":ngpus={c.gpus_per_node}" if c.gpus_per_node else ""
            procs = f":mpiprocs={per_node}" if ranks else ""
            lines.append(f"-l select={c.nodes}{gpus}{procs}")
            if c.layout == "whole_node":
                lines.append("-l place=excl")
            elif c.nodes > 1:
                lines.append("-l place=scatter")
        else:
            procs = f":ppn={per_node}" if ranks else ""
            gpus = f":gpus={c.gpus_per_node}" if c.gpus_per_node else ""
            lines.append(f"-l nodes={c.nodes}{procs}{gpus}")
            if c.layout == "whole_node":
                lines.append("-n")
        lines.append("-r y" if c.requeue else "-r n")
        return lines + c.directives + o.directives

    def submit_script(self, worker: Worker, script: str) -> str:
        result = self.run(["qsub", str(worker.script)])
        batch_id = parse_qsub(result.stdout)
        if not result.ok or batch_id is None:
            raise BatchSubmitError(f"qsub refused the job: {result.describe()}")
        return batch_id

    def query(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        listed: dict[str, str] | None
        if self.config.qstat_format == "json":
            result = self.run(["qstat", "-f", "-F", "json", *batch_ids])
            listed = parse_qstat_json(result.stdout) if result.stdout.strip() else None
        else:
            result = self.run(["qstat", *batch_ids])
            listed = parse_qstat_plain(result.stdout)
        gone = ended(result.stderr)
        if not listed and not gone and (listed is None or not result.ok):
            log.warning("qstat failed, states unknown this time: %s", result.describe())
            return {}
        listed = listed or {}
        states: dict[str, BatchState] = {}
        for batch_id in batch_ids:
            seq = sequence(batch_id)
            if seq in listed:
                states[batch_id] = pbs_state(listed[seq])
            elif seq in gone:
                states[batch_id] = "done"
        return states

    def cancel_argv(self, batch_id: str) -> list[str]:
        return ["qdel", batch_id]

    def rank_launcher(self, tasks_per_node: int) -> list[str]:
        n = self.config.nodes
        return ["mpirun", "-n", str(n * tasks_per_node), "-ppn", str(tasks_per_node)]
