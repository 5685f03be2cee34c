"""The ``slurm`` batch system: each edge job runs as one Slurm batch job, or (layout
``per_gpu``) one Slurm job per node runs a late-binding worker with a slot per GPU.

Supports: partition, account, walltime, node count, GPUs per node (``--gres=gpu:N``, on
which Slurm sets ``CUDA_VISIBLE_DEVICES`` for the job), extra ``#SBATCH`` lines, set-up
lines, the compute nodes' python, a launcher prefix, and network isolation (the agent
runs under ``unshare -n``); per compute class, a partition, account, QOS, constraint and
extra lines (:mod:`edge.batch.options`). Submits with ``sbatch --parsable``. Polls every id with one
``squeue``; ids it no longer lists (ended longer ago than the controller's MinJobAge,
5 minutes by default) are looked up with one ``sacct``, and count as done when
accounting is off or does not know them either, since the controller has no such job
then. Cancels with ``scancel``: Slurm sends SIGTERM, the agent stops the payload within
its grace period, and SIGKILL follows after the cluster's KillWait.

Batch jobs are not requeued by Slurm (``--no-requeue``) unless ``requeue`` is set: the
central service retries points itself.

Layouts: ``whole_node`` adds ``--exclusive``; ``multi_node`` asks for
``--ntasks-per-node`` and starts the ranks with ``srun --nodes=N --ntasks=N*T
--ntasks-per-node=T --kill-on-bad-exit=1``; ``elastic`` asks for ``--nodes=MIN-MAX`` and
starts one task per granted node with ``srun --ntasks-per-node=1``, which runs torchrun.

Does not support (yet): job arrays, heterogeneous jobs, and federations or
``--clusters`` (the cluster part
``sbatch --parsable`` may print is dropped).

Tested against a real one-node Slurm 22.05 (``deploy/dev/slurm.py`` starts it).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from edge.batch.commands import CommandError
from edge.batch.options import ClassBatchOptions
from edge.batch.port import BatchState, BatchSubmitError
from edge.batch.scheduled import ScheduledBatch
from edge.batch.script import DirectiveName, ScheduledBatchConfig, Worker, directive_value

log = logging.getLogger(__name__)

RUNNING_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "SPECIAL_EXIT",
        "RESV_DEL_HOLD",
        "POWER_UP_NODE",
    }
)
"""Queued, held, or with a batch script that may still run (again)."""
DONE_STATES = frozenset(
    {
        "COMPLETING",
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "STAGE_OUT",
    }
)
"""The batch script has ended (COMPLETING and STAGE_OUT only tidy up after it)."""


class SlurmBatchConfig(ScheduledBatchConfig):
    kind: Literal["slurm"] = "slurm"
    partition: DirectiveName | None = None


def slurm_state(name: str) -> BatchState:
    """Map a state of ``squeue --format=%T`` or ``sacct --format=State``."""
    words = name.split()  # sacct writes "CANCELLED by 1000"
    state = words[0].upper() if words else ""
    if state in RUNNING_STATES:
        return "running"
    if state in DONE_STATES:
        return "done"
    return "unknown"


def slurm_time(walltime: timedelta) -> str:
    """``--time`` as ``[D-]HH:MM:SS``, rounded up to the second."""
    seconds = max(1, math.ceil(walltime.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{hms}" if days else hms


def slurm_nodes(config: ScheduledBatchConfig) -> str:
    """``--nodes``: ``MIN-MAX`` for an elastic job, so Slurm may start it on fewer nodes
    and torchrun's rendezvous takes what it got."""
    if config.layout == "elastic" and config.min_nodes is not None:
        return (
            f"{config.min_nodes}-{config.nodes}"
            if config.min_nodes < config.nodes
            else str(config.nodes)
        )
    return str(config.nodes)


def parse_sbatch(stdout: str) -> str | None:
    """The job id in ``sbatch --parsable`` output (``ID`` or ``ID;CLUSTER``)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    job_id = lines[-1].split(";", 1)[0]
    return job_id if job_id.isdigit() else None


def parse_table(stdout: str) -> dict[str, str]:
    """``ID|STATE`` lines (squeue ``--format=%i|%T``, sacct ``--parsable2``) as a dict."""
    states: dict[str, str] = {}
    for line in stdout.splitlines():
        job_id, sep, state = line.strip().partition("|")
        if sep and job_id:
            states.setdefault(job_id, state.split("|", 1)[0].strip())
    return states


class SlurmBatch(ScheduledBatch):
    kind = "slurm"
    directive_prefix = "#SBATCH"
    job_id_variable = "SLURM_JOB_ID"
    id_pattern = re.compile(r"[0-9]+")

    def __init__(self, config: SlurmBatchConfig, *, isolate_network: bool = False) -> None:
        self.config = config  # before the base, which asks for the launcher
        super().__init__(config, isolate_network=isolate_network)

    def directives(self, worker: Worker, options: ClassBatchOptions | None = None) -> list[str]:
        c, o = self.config, options or ClassBatchOptions()
        lines = [
            f"--job-name={directive_value(worker.name, 'job name')}",
            f"--output={directive_value(worker.log, 'batch log path')}",
            f"--chdir={directive_value(worker.dir, 'worker directory')}",
            f"--nodes={slurm_nodes(c)}",
        ]
        if o.partition or c.partition:
            lines.append(f"--partition={o.partition or c.partition}")
        if o.account or c.account:
            lines.append(f"--account={o.account or c.account}")
        if o.qos:
            lines.append(f"--qos={o.qos}")
        if o.constraint:
            lines.append(f"--constraint={o.constraint}")
        if c.walltime is not None:
            lines.append(f"--time={slurm_time(c.walltime)}")
        if c.gpus_per_node:
            lines.append(f"--gres=gpu:{c.gpus_per_node}")
        if c.layout == "whole_node":
            lines.append("--exclusive")
        elif c.layout in ("multi_node", "elastic"):
            per_node = c.tasks_per_node if c.layout == "multi_node" else 1
            lines.append(f"--ntasks-per-node={per_node}")
        lines.append("--requeue" if c.requeue else "--no-requeue")
        return lines + c.directives + o.directives

    def submit_script(self, worker: Worker, script: str) -> str:
        result = self.run(["sbatch", "--parsable", str(worker.script)])
        if not result.ok:
            raise BatchSubmitError(f"sbatch refused the job: {result.describe()}")
        batch_id = parse_sbatch(result.stdout)
        if batch_id is None:
            raise BatchSubmitError(f"sbatch printed no job id: {result.stdout.strip()!r}")
        if result.stderr.strip():
            log.warning("sbatch (job %s): %s", batch_id, result.stderr.strip())
        return batch_id

    def query(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        result = self.run(
            [
                "squeue",
                "--noheader",
                "--states=all",
                "--format=%i|%T",
                "--jobs=" + ",".join(batch_ids),
            ]
        )
        if result.ok:
            listed = parse_table(result.stdout)
        elif "invalid job id" in result.stderr.lower():
            listed = {}  # squeue's answer when it knows none of the (single) id(s)
        else:
            log.warning("squeue failed, states unknown this time: %s", result.describe())
            return {}
        states = {b: slurm_state(listed[b]) for b in batch_ids if b in listed}
        missing = [b for b in batch_ids if b not in listed]
        if missing:
            accounted = self._sacct(missing)
            for batch_id in missing:
                known = accounted.get(batch_id)
                states[batch_id] = slurm_state(known) if known else "done"
        return states

    def _sacct(self, batch_ids: Sequence[str]) -> dict[str, str]:
        """States from accounting, or {} where it is off ("accounting storage is
        disabled") or cannot answer: squeue, which asks the controller, has the last word."""
        argv = [
            "sacct",
            "--noheader",
            "--parsable2",
            "--allocations",
            "--format=JobIDRaw,State",
            "--jobs=" + ",".join(batch_ids),
        ]
        try:
            result = self.run(argv)
        except CommandError as exc:
            log.debug("sacct cannot help: %s", exc)
            return {}
        if not result.ok:
            log.debug("sacct cannot help: %s", result.describe())
            return {}
        return parse_table(result.stdout)

    def cancel_argv(self, batch_id: str) -> list[str]:
        return ["scancel", batch_id]

    def rank_launcher(self, tasks_per_node: int) -> list[str]:
        if self.config.layout == "elastic":  # every node Slurm granted, however many
            return ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
        n = self.config.nodes
        return [
            "srun",
            f"--nodes={n}",
            f"--ntasks={n * tasks_per_node}",
            f"--ntasks-per-node={tasks_per_node}",
            "--kill-on-bad-exit=1",
        ]
