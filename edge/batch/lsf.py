"""The ``lsf`` batch system (IBM Spectrum LSF): each edge job runs as one LSF job.

**Contract-tested only.** No LSF can be installed where hpo-relay is developed, so this
adapter is tested against recording stand-ins of ``bsub``, ``bjobs`` and ``bkill`` that
answer in the formats of the IBM Spectrum LSF 10.1 command reference
(``tests/unit/edge/batch/fakehpc.py`` lists them). Try it on a real cluster before
relying on it, and report what differs.

Submits with ``bsub < batch.sh`` (options on ``#BSUB`` lines) and reads the id from
``Job <ID> is submitted to ... queue <Q>.``. Polls every id with one
``bjobs -a -noheader -o "jobid stat" ID...``; an id bjobs reports as ``Job <ID> is not
found`` (removed after the cluster's CLEAN_PERIOD) counts as done, one it does not
mention at all as unknown. Cancels with ``bkill`` (SIGINT, SIGTERM, then SIGKILL: the
agent stops the payload on the first of them).

Supports: queue, project (``account`` → ``-P``), walltime (``-W``, whole minutes, rounded
up), GPUs per host (``-gpu "num=N"``), nodes (``-n N -R "span[ptile=1]"``), extra
``#BSUB`` lines, set-up lines, the nodes' python, a launcher, ``unshare -n`` isolation,
and not rerunnable (``-rn``) unless ``requeue`` is set; per compute class, a queue,
project, ``select[...]`` constraint and extra lines (:mod:`edge.batch.options`).

Power9 machines with IBM CSM (Summit, Sierra) allocate whole nodes (set
``whole_nodes = true`` for ``-nnodes N``; ``-gpu`` is then left out, every GPU of the
node is the job's) and run the batch script on a *launch* node: the agent must be
started on the compute node by ``jsrun``, e.g. ``launcher = ["jsrun", "-n1", "-a1",
"-c42", "-g6"]``.

Layouts: ``whole_node`` adds ``-x`` (exclusive host) unless ``whole_nodes``;
``multi_node`` asks for ``-n N*T -R "span[ptile=T]"`` (or ``-nnodes N``) and starts the
ranks with ``jsrun --nrs=N --rs_per_host=1 --tasks_per_rs=T --cpu_per_rs=ALL_CPUS
[--gpu_per_rs=ALL_GPUS]``, the agent itself staying in the batch script (so leave
``launcher`` empty); ``elastic`` does the same with one task per node, which runs
torchrun. On ``whole_nodes`` machines the first host of ``LSB_MCPU_HOSTS`` is the launch
node and is skipped when the ranks look for the first compute node. LSF clusters without
jsrun set ``payload_launcher`` (e.g. ``["mpirun", "-n", "8"]``).

Does not support (yet): several agents per batch job, job arrays, LSF multicluster.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from edge.batch.options import ClassBatchOptions
from edge.batch.port import BatchState, BatchSubmitError
from edge.batch.scheduled import ScheduledBatch
from edge.batch.script import DirectiveName, ScheduledBatchConfig, Worker, directive_value

log = logging.getLogger(__name__)

RUNNING_STATES = frozenset({"PEND", "PROV", "WAIT", "RUN", "PSUSP", "USUSP", "SSUSP"})
DONE_STATES = frozenset({"DONE", "EXIT"})
# UNKWN (execution host unreachable) and ZOMBI (killed while unreachable) stay unknown:
# the agent may still run there, and its heartbeat decides.

SUBMITTED = re.compile(r"Job <(\d+)> is submitted")
NOT_FOUND = re.compile(r"Job <(\d+)> is not found")


class LsfBatchConfig(ScheduledBatchConfig):
    kind: Literal["lsf"] = "lsf"
    queue: DirectiveName | None = None
    whole_nodes: bool = False
    """``-nnodes N`` (IBM CSM machines) instead of ``-n``/``-gpu`` slot requests."""


def lsf_state(stat: str) -> BatchState:
    """Map a ``bjobs`` STAT value."""
    stat = stat.strip().upper()
    if stat in RUNNING_STATES:
        return "running"
    if stat in DONE_STATES:
        return "done"
    return "unknown"


def lsf_walltime(walltime: timedelta) -> str:
    """``-W`` as ``H:MM``, rounded up to the minute."""
    minutes = max(1, math.ceil(walltime.total_seconds() / 60))
    return f"{minutes // 60}:{minutes % 60:02d}"


def parse_bsub(stdout: str) -> str | None:
    match = SUBMITTED.search(stdout)
    return match.group(1) if match else None


def parse_bjobs(stdout: str) -> dict[str, str]:
    """``JOBID STAT`` lines of ``bjobs -noheader -o "jobid stat"``."""
    states: dict[str, str] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            states.setdefault(fields[0], fields[1])
    return states


class LsfBatch(ScheduledBatch):
    kind = "lsf"
    directive_prefix = "#BSUB"
    job_id_variable = "LSB_JOBID"
    id_pattern = re.compile(r"[0-9]+")

    def __init__(self, config: LsfBatchConfig, *, isolate_network: bool = False) -> None:
        self.config = config  # before the base, which asks for the launcher
        super().__init__(config, isolate_network=isolate_network)

    def directives(self, worker: Worker, options: ClassBatchOptions | None = None) -> list[str]:
        c, o = self.config, options or ClassBatchOptions()
        lines = [
            f"-J {directive_value(worker.name, 'job name')}",
            f"-o {directive_value(worker.log, 'batch log path')}",  # stderr joins it
            f"-cwd {directive_value(worker.dir, 'worker directory')}",
        ]
        if o.queue or c.queue:
            lines.append(f"-q {o.queue or c.queue}")
        if o.account or c.account:
            lines.append(f"-P {o.account or c.account}")
        if o.constraint:
            lines.append(f'-R "select[{o.constraint}]"')
        if c.walltime is not None:
            lines.append(f"-W {lsf_walltime(c.walltime)}")
        if c.whole_nodes:
            lines.append(f"-nnodes {c.nodes}")
        else:
            per_node = c.tasks_per_node if c.layout == "multi_node" else 1
            if c.nodes > 1 or per_node > 1:
                lines += [f"-n {c.nodes * per_node}", f'-R "span[ptile={per_node}]"']
            if c.gpus_per_node:
                lines.append(f'-gpu "num={c.gpus_per_node}"')
            if c.layout == "whole_node":
                lines.append("-x")
        lines.append("-r" if c.requeue else "-rn")
        return lines + c.directives + o.directives

    def submit_script(self, worker: Worker, script: str) -> str:
        result = self.run(["bsub"], stdin=script)
        batch_id = parse_bsub(result.stdout)
        if not result.ok or batch_id is None:
            raise BatchSubmitError(f"bsub refused the job: {result.describe()}")
        return batch_id

    def query(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        result = self.run(["bjobs", "-a", "-noheader", "-o", "jobid stat", *batch_ids])
        listed = parse_bjobs(result.stdout)
        gone = set(NOT_FOUND.findall(result.stderr + result.stdout))
        if not result.ok and not listed and not gone:
            log.warning("bjobs failed, states unknown this time: %s", result.describe())
            return {}
        states: dict[str, BatchState] = {b: "done" for b in batch_ids if b in gone}
        states.update({b: lsf_state(listed[b]) for b in batch_ids if b in listed})
        return states

    def cancel_argv(self, batch_id: str) -> list[str]:
        return ["bkill", batch_id]

    def starts_on_launch_node(self) -> bool:
        return self.config.whole_nodes

    def rank_launcher(self, tasks_per_node: int) -> list[str]:
        argv = [
            "jsrun",
            f"--nrs={self.config.nodes}",
            "--rs_per_host=1",
            f"--tasks_per_rs={tasks_per_node}",
            "--cpu_per_rs=ALL_CPUS",
        ]
        if self.config.gpus_per_node:
            argv.append("--gpu_per_rs=ALL_GPUS")
        return argv
