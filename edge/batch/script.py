"""Batch scripts and worker directories of the scheduled batch systems (Slurm, LSF, PBS).

A *worker* is one batch job. Its directory ``$ROOT/workers/<worker_id>/`` (docs/edge.md) holds
``batch.sh``, the script the harvester submitted; ``batch.log``, what the scheduler itself
writes for the job (its own errors, "cancelled at", "time limit"); and ``worker.json``,
the harvester's record of the submission (batch id, jobs, or why it was refused). What the
node agent prints goes to ``agent.log`` in the *job* directory, where the harvester looks
when a job is lost; the set-up lines print there too, so a failing ``module load`` shows
up in the message the user gets.

The script is the same for every scheduler except its directive lines, which each
adapter renders from its config. Values it writes into shell code are quoted with
:func:`shlex.quote`; values on directive lines are checked by :func:`directive_value`,
since each scheduler parses those lines with its own (not the shell's) rules. The
``setup`` lines are the site admin's shell code and are written verbatim on purpose.

A worker of the other layouts runs exactly one node agent, for one job, with ``exec``,
so that the scheduler's signals (cancel, walltime) reach the agent itself and it can
stop the payload cleanly. The site layout (docs/edge.md) reaches the agent as ``--layout JSON``:
``whole_node`` shows the payload every GPU of the node, ``multi_node`` and ``elastic``
have the agent start the payload through a multi-node launcher (``srun``, ``jsrun``,
``mpirun``) from the batch script itself, on the first node. A ``per_gpu`` worker
(layout 1) ``exec``s the worker agent instead, which runs one payload per GPU and takes
late-bound jobs from the worker's ``inbox/`` (:mod:`edge.workerproto`); it logs to
``agent.log`` in the worker directory.
"""

from __future__ import annotations

import math
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import edge
from edge.fsproto import JOBS_DIR, JobPaths
from edge.workerproto import WORKERS_DIR, WorkerPaths
from edge.workerproto import WorkerRecord as WorkerRecord  # its home until layout 1

DirectiveName = Annotated[str, Field(min_length=1, pattern=r"^[^\s\"'\\%#]+$")]
"""A partition, queue or account name: one word, nothing a directive parser treats
specially."""


class ScheduledBatchConfig(BaseModel):
    """What every scheduled batch system shares; each adapter adds its own fields
    (``partition`` for Slurm, ``queue`` for LSF and PBS) and its ``kind``."""

    model_config = ConfigDict(extra="forbid")

    account: DirectiveName | None = None
    """Account to charge (Slurm ``--account``, LSF ``-P`` project, PBS ``-A``)."""
    walltime: timedelta | None = None
    """Time limit of each batch job (TOML ``"02:00:00"`` or seconds); None: the queue's
    default."""
    layout: Literal["single", "per_gpu", "whole_node", "multi_node", "elastic"] = "single"
    """How a job's payload is placed (docs/edge.md, "Site layouts"): ``single`` one payload with the
    job's GPUs, one batch job per edge job; ``per_gpu`` (layout 1) one batch job per
    node running one payload per GPU, taking further jobs from its inbox while its
    walltime lasts (late binding; needs ``gpus_per_node``); ``whole_node`` one payload
    seeing every GPU of its node; ``multi_node`` ``nodes * tasks_per_node`` ranks started
    by the scheduler's launcher, with the torch.distributed variables exported;
    ``elastic`` torchrun on every node."""
    nodes: int = Field(default=1, ge=1, le=100_000)
    """Nodes per batch job. The agent runs on the first one; more pay off only with the
    ``multi_node`` and ``elastic`` layouts."""
    gpus_per_node: int = Field(default=0, ge=0, le=64)
    tasks_per_node: int = Field(default=1, ge=1, le=1024)
    """``multi_node``: ranks per node; ``elastic``: torchrun's ``--nproc-per-node``."""
    min_nodes: int | None = Field(default=None, ge=1)
    """``elastic``: torchrun's ``--nnodes=MIN:MAX`` with MAX = ``nodes``; None: ``nodes``."""
    payload_launcher: list[str] = []
    """``multi_node`` and ``elastic``: the argv starting one process per rank (per node for
    ``elastic``) in place of the scheduler's default (``srun ...``, ``jsrun ...``,
    ``mpirun ...``, written from ``nodes`` and ``tasks_per_node``)."""
    torchrun: list[str] = ["torchrun"]
    """``elastic``: how torchrun is started in the payload's environment, e.g.
    ``["python3", "-m", "torch.distributed.run"]``."""
    master_port: int | None = Field(default=None, ge=1024, le=65535)
    """``multi_node`` and ``elastic``: the port the ranks meet on, on the first node;
    None: derived from the job and point (20000-31999), the same on every rank."""
    directives: list[str] = []
    """Extra directive lines, without the prefix: ``["--qos=high"]`` for Slurm,
    ``['-alloc_flags "smt4"']`` for LSF, ``["-l filesystems=home"]`` for PBS."""
    setup: list[str] = []
    """Shell lines run before the agent starts, e.g. ``module load python/3.11``."""
    python: str | None = None
    """The interpreter on the compute nodes; None: the harvester's own, which suits a
    virtualenv on the shared filesystem."""
    export_code_root: bool = True
    """Put the harvester's own code directory first on the agent's ``PYTHONPATH`` so
    both run the same release (that directory must then be on the shared filesystem);
    false when hpo-relay is installed in ``python``'s environment on the nodes."""
    launcher: list[str] = []
    """Argv placed before the agent, e.g. ``["jsrun", "-n1", "-a1", "-c42", "-g6"]`` on
    power9 (Summit-like) machines where the batch script runs on a launch node."""
    shell: str = Field(default="/bin/bash", pattern=r"^/\S+$")
    requeue: bool = False
    """Let the scheduler rerun a batch job after a node failure. Off: the central
    service already retries points, and a silent rerun would evaluate one twice."""
    command_timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for one scheduler command (sbatch, squeue ...)."""

    @model_validator(mode="after")
    def _layout_fits(self) -> ScheduledBatchConfig:
        if self.layout == "whole_node" and self.nodes != 1:
            raise ValueError(
                "layout 'whole_node' runs one payload on one node: set nodes = 1, or use "
                "layout 'multi_node' for a payload spanning nodes"
            )
        ranks = self.layout in ("multi_node", "elastic")
        if not ranks and self.tasks_per_node != 1:
            raise ValueError("tasks_per_node applies to layouts 'multi_node' and 'elastic' only")
        if ranks and self.launcher:
            raise ValueError(
                f"launcher starts the node agent, which runs in the batch script itself for "
                f"layout {self.layout!r}: put the launcher of the ranks in payload_launcher"
            )
        if self.min_nodes is not None and (self.layout != "elastic" or self.min_nodes > self.nodes):
            raise ValueError("min_nodes applies to layout 'elastic' and must not exceed nodes")
        if self.layout == "per_gpu" and self.gpus_per_node < 1:
            raise ValueError("layout 'per_gpu' needs gpus_per_node >= 1")
        return self

    @field_validator("walltime")
    @classmethod
    def _positive_walltime(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("walltime must be positive")
        return value

    @field_validator("directives", "setup")
    @classmethod
    def _single_lines(cls, lines: list[str]) -> list[str]:
        for line in lines:
            if "\n" in line or "\r" in line or "\0" in line:
                raise ValueError(f"{line!r} spans several lines: give one entry per line")
        return lines


class UnsafeDirectiveError(ValueError):
    """A value that cannot be written on a directive line."""


def directive_value(value: str | Path, what: str) -> str:
    """``value`` as it may stand on a ``#SBATCH``/``#BSUB``/``#PBS`` line.

    The schedulers split those lines on whitespace and honour double quotes, so a value
    with spaces is double-quoted; quotes, backslashes, ``%`` (a file-name placeholder
    in Slurm and LSF) and control characters have no portable spelling and are refused.
    """
    text = str(value)
    if not text or any(c in "\"'\\%" or ord(c) < 32 or ord(c) == 127 for c in text):
        raise UnsafeDirectiveError(
            f"{what} {text!r} cannot be written on a batch directive line "
            "(quotes, backslashes, % and control characters are not allowed)"
        )
    return f'"{text}"' if any(c.isspace() for c in text) else text


@dataclass(frozen=True)
class Worker:
    """One batch job and the job directories bound to it at submission: exactly one
    for the ``single`` layout, none for ``per_gpu`` (its jobs come through the inbox)."""

    worker_id: str
    dir: Path
    job_dirs: tuple[Path, ...]

    @property
    def script(self) -> Path:
        return self.dir / "batch.sh"

    @property
    def log(self) -> Path:
        return self.dir / "batch.log"

    @property
    def record(self) -> Path:
        return self.dir / "worker.json"

    @property
    def name(self) -> str:
        """The batch job's name: ``hpo-<job_id>`` for a one-job worker."""
        if len(self.job_dirs) == 1:
            return f"hpo-{self.job_dirs[0].name}"
        return f"hpo-{self.worker_id}"


def new_worker(job_dir: Path) -> Worker:
    """Create the directory of a fresh worker for ``$ROOT/jobs/<job_id>``."""
    job_dir = job_dir.absolute()
    if job_dir.parent.name != JOBS_DIR:
        raise ValueError(f"{job_dir} is not a job directory under an edge root ({JOBS_DIR}/)")
    worker_id = f"w-{secrets.token_hex(6)}"
    directory = job_dir.parent.parent / WORKERS_DIR / worker_id
    directory.mkdir(parents=True)
    return Worker(worker_id, directory, (job_dir,))


def new_late_worker(root: Path) -> Worker:
    """Create the directory (with its inbox) of a fresh late-binding worker."""
    worker_id = f"w-{secrets.token_hex(6)}"
    paths = WorkerPaths.under(root.absolute(), worker_id)
    paths.make()
    return Worker(worker_id, paths.dir, ())


def code_root() -> Path:
    """The directory holding the ``edge`` package this harvester runs."""
    return Path(edge.__file__).resolve().parent.parent


@dataclass(frozen=True)
class ScriptSettings:
    """How the body of every script of one adapter is written."""

    shell: str
    directive_prefix: str
    """``#SBATCH``, ``#BSUB`` or ``#PBS``."""
    job_id_variable: str
    """The scheduler's variable with the batch id, for the first line of agent.log."""
    python: str
    setup: Sequence[str] = ()
    launcher: Sequence[str] = ()
    pythonpath: str | None = None
    isolate_network: bool = False
    agent_args: Sequence[str] = ()
    """Options after ``run-job JOB_DIR`` (the layout)."""


def render_script(settings: ScriptSettings, worker: Worker, directives: Sequence[str]) -> str:
    """The complete batch script of ``worker``; ``directives`` are option texts without
    the prefix, already checked by the adapter."""
    q = shlex.quote
    lines = [f"#!{settings.shell}"]
    lines += [f"{settings.directive_prefix} {d}" for d in directives]
    lines += [
        f"# hpo-relay worker {worker.worker_id}: generated by the edge harvester, do not edit",
        f"export HPO_WORKER_ID={q(worker.worker_id)}",
        f"export HPO_WORKER_DIR={q(str(worker.dir))}",
        f"cd {q(str(worker.dir))} || exit 1",
    ]
    launch = _single_agent if worker.job_dirs else _worker_agent
    lines += launch(settings, worker)
    return "\n".join(lines) + "\n"


def _prologue(settings: ScriptSettings, log_file: Path) -> list[str]:
    """Output to ``log_file``, the set-up lines, PYTHONPATH and the isolation check."""
    q = shlex.quote
    lines = [
        f"exec >>{q(str(log_file))} 2>&1",
        'echo "hpo-relay: worker $HPO_WORKER_ID on $(hostname),'
        f' batch job ${{{settings.job_id_variable}:-?}}"',
        *settings.setup,
    ]
    if settings.pythonpath:
        lines.append(f'export PYTHONPATH={q(settings.pythonpath)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    if settings.isolate_network:
        lines += [
            "if ! unshare -n true; then",
            "    echo \"hpo-relay: isolate_network is set but 'unshare -n' fails on"
            ' $(hostname): run the jobs as a user allowed to create network namespaces"',
            "    exit 1",
            "fi",
        ]
    return lines


def _exec_agent(settings: ScriptSettings, *args: str) -> str:
    isolation = ["unshare", "-n"] if settings.isolate_network else []
    argv = [*settings.launcher, *isolation, settings.python, "-m", "edge.node", *args]
    return "exec " + shlex.join(argv)


def _worker_agent(settings: ScriptSettings, worker: Worker) -> list[str]:
    """Layout ``per_gpu``: the script becomes the worker agent, which runs one payload
    per GPU and takes jobs from the inbox. ``HPO_WORKER_STARTED`` is the batch job's
    start, from which the agent reckons the end of its walltime."""
    return [
        "export HPO_WORKER_STARTED=$(date +%s)",
        *_prologue(settings, WorkerPaths(worker.dir).agent_log),
        _exec_agent(settings, "run-worker", str(worker.dir)),
    ]


def _single_agent(settings: ScriptSettings, worker: Worker) -> list[str]:
    """Every other layout: the script becomes the node agent of its one job (told the
    layout by ``--layout``)."""
    if len(worker.job_dirs) != 1:
        raise ValueError("a worker of this layout runs exactly one job")
    job = JobPaths(worker.job_dirs[0])
    return [
        *_prologue(settings, job.agent_log),
        _exec_agent(settings, "run-job", str(job.dir), *settings.agent_args),
    ]


def format_hms(walltime: timedelta) -> str:
    """``H:MM:SS`` (hours unbounded), rounded up to the second."""
    seconds = max(1, math.ceil(walltime.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
