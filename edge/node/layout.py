"""How a node agent places its payload: the site layout (docs/edge.md) it was started for.

The batch adapter renders one :class:`NodeLayout` into the batch script as
``run-job JOB_DIR --layout JSON``, and the agent hands the same JSON on to every rank's
``rank-env`` wrapper, so the harvester, the agent and the ranks read one contract:

* ``single``: one payload with the GPUs of ``job.json`` (the default, and all there was
  before layouts existed: a script without ``--layout`` means this);
* ``whole_node``: one payload that sees every GPU of its node;
* ``multi_node``: one payload of ``nodes * tasks_per_node`` ranks started by ``launcher``
  (``srun``, ``jsrun``, ``mpirun``); only the agent on the first node supervises;
* ``elastic``: ``torchrun --nnodes=MIN:MAX`` started by ``launcher`` once per node.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PORT_BASE = 20000
PORT_SPAN = 12000
"""Derived ports stay in 20000-31999, below Linux's ephemeral range (32768 and up), so
an outgoing connection on the first node cannot hold the port the ranks meet on."""


class NodeLayout(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["single", "per_gpu", "whole_node", "multi_node", "elastic"] = "single"
    gpus_per_node: int = Field(default=0, ge=0)
    """whole_node: the GPUs made visible when the scheduler names none itself."""
    nodes: int = Field(default=1, ge=1)
    """multi_node and elastic: nodes of the launch (elastic: the MAX of ``--nnodes``)."""
    min_nodes: int | None = Field(default=None, ge=1)
    """elastic: the MIN of ``--nnodes``; None: ``nodes``."""
    tasks_per_node: int = Field(default=1, ge=1)
    """multi_node: ranks per node; elastic: torchrun's ``--nproc-per-node``."""
    launcher: list[str] = []
    """multi_node and elastic: the argv that starts one wrapper per rank (or per node)."""
    torchrun: list[str] = ["torchrun"]
    """elastic: how the payload's environment starts torchrun."""
    master_port: int | None = Field(default=None, ge=1024, le=65535)
    """The ranks' meeting port on the first node; None: derived per job and point."""
    skip_first_host: bool = False
    """The scheduler's host list starts with a launch node that runs no rank (LSF on
    IBM CSM machines lists the batch node first)."""

    @property
    def launches_ranks(self) -> bool:
        return self.kind in ("multi_node", "elastic")


def derived_port(job_id: str, index: int) -> int:
    """A port every rank of one point agrees on without talking: a hash of the job and
    the point, so consecutive points (and concurrent jobs) do not reuse one."""
    return PORT_BASE + zlib.crc32(f"{job_id}/{index}".encode()) % PORT_SPAN


def visible_gpus(environ: Mapping[str, str]) -> list[str] | None:
    """The GPUs the scheduler or launcher assigned through ``CUDA_VISIBLE_DEVICES``
    (Slurm ``--gres``, LSF ``-gpu``, ``jsrun -g``, PBS cgroups); None if it set none."""
    value = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not value or value == "NoDevFiles":  # what older Slurm sets when there is no GPU
        return None
    return [gpu.strip() for gpu in value.split(",") if gpu.strip()]


def whole_node_gpus(environ: Mapping[str, str], gpus_per_node: int) -> list[str] | None:
    """Every GPU of the node: the scheduler's assignment, else ``0..gpus_per_node-1``."""
    assigned = visible_gpus(environ)
    if assigned is not None:
        return assigned
    return [str(i) for i in range(gpus_per_node)] if gpus_per_node else None
