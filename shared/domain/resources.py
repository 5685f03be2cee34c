"""What a task's jobs need (``resources``) and what a site's compute classes offer.

A task may ask, per evaluation job, for GPUs, nodes, CPUs, memory per node, a walltime,
a layout, a GPU model or a compute class by name; every key is optional. A site
declares its **compute classes** in its config and in every heartbeat: the hardware of
one kind of node it runs jobs on (GPU model and count per node, CPUs and memory per
node, how many nodes a job may span, the layouts it offers and its walltime limit). The
broker sends a job only to a class that satisfies it (:func:`class_refusal`), and says
in the task why a job waits when no live class does. Pure, no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator

Layout = Literal["single", "per_gpu", "whole_node", "multi_node", "elastic"]
CLASS_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_WALLTIME = 366 * 24 * 3600
_HMS = re.compile(r"^(?:(\d+)-)?(\d{1,3}):(\d{2}):(\d{2})$")


def walltime_seconds(value: object) -> object:
    """``"HH:MM:SS"``, ``"D-HH:MM:SS"`` (Slurm's form) or seconds."""
    if isinstance(value, str):
        found = _HMS.match(value.strip())
        if found is None:
            raise ValueError(f"walltime {value!r} is not HH:MM:SS, D-HH:MM:SS or seconds")
        days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
        if minutes > 59 or seconds > 59:
            raise ValueError(f"walltime {value!r}: minutes and seconds run to 59")
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return value


def _hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _size(n: int) -> str:
    return ByteSize(n).human_readable(decimal=False)


class Resources(BaseModel):
    """A task's ``resources``: what each evaluation job needs. Every key is optional."""

    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(default=0, ge=0, le=4096)
    """GPUs per evaluation (spread evenly over its nodes)."""
    nodes: int = Field(default=1, ge=1, le=4096)
    cpus: int | None = Field(default=None, ge=1, le=100_000)
    """CPU cores per node."""
    memory: ByteSize | None = Field(default=None, ge=1, le=2**60)
    """Memory per node (``"64GiB"``, ``"500GB"`` or bytes)."""
    walltime: int | None = Field(default=None, ge=1, le=MAX_WALLTIME)
    """Per job (``"HH:MM:SS"`` or seconds)."""
    layout: Layout | None = None
    gpu_model: str | None = Field(default=None, min_length=1, max_length=64)
    """E.g. ``A100``, compared without regard to case."""
    compute_class: str | None = Field(default=None, pattern=CLASS_NAME)
    """A class by name, as the site declares it."""

    _walltime = field_validator("walltime", mode="before")(walltime_seconds)

    @property
    def gpus_per_node(self) -> int:
        return math.ceil(self.gpus / self.nodes)

    @property
    def asks_anything(self) -> bool:
        return self != Resources()


def _single() -> list[Layout]:
    return ["single"]


class ComputeClass(BaseModel):
    """One class of a site's nodes, from its config's ``[[compute_classes]]``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=CLASS_NAME)
    gpu_model: str | None = Field(default=None, min_length=1, max_length=64)
    gpus_per_node: int = Field(default=0, ge=0, le=4096)
    cpus_per_node: int | None = Field(default=None, ge=1, le=100_000)
    memory: ByteSize | None = Field(default=None, ge=1, le=2**60)
    """Memory per node; None: not declared (not checked)."""
    max_nodes: int = Field(default=1, ge=1, le=100_000)
    """Nodes one job may span."""
    layouts: list[Layout] = Field(default_factory=_single, min_length=1, max_length=5)
    max_walltime: int | None = Field(default=None, ge=1, le=MAX_WALLTIME)
    """None: no limit."""

    _walltime = field_validator("max_walltime", mode="before")(walltime_seconds)


def class_refusal(needs: Resources, offered: ComputeClass) -> str | None:
    """Why a job needing ``needs`` cannot run on ``offered`` (for the user); None if it can."""
    if needs.compute_class and needs.compute_class != offered.name:
        return f"not the class {needs.compute_class}"
    if needs.nodes > offered.max_nodes:
        return f"{offered.max_nodes} node(s) per job at most"
    if needs.gpus_per_node > offered.gpus_per_node:
        return f"{offered.gpus_per_node} GPU(s) per node"
    if needs.gpu_model and (offered.gpu_model or "").lower() != needs.gpu_model.lower():
        return f"GPU model {offered.gpu_model or 'none declared'}"
    if needs.cpus and offered.cpus_per_node is not None and needs.cpus > offered.cpus_per_node:
        return f"{offered.cpus_per_node} CPU cores per node"
    if needs.memory and offered.memory is not None and needs.memory > offered.memory:
        return f"{_size(offered.memory)} of memory per node"
    if (
        needs.walltime
        and offered.max_walltime is not None
        and needs.walltime > offered.max_walltime
    ):
        return f"a walltime limit of {_hms(offered.max_walltime)}"
    if needs.layout and needs.layout not in offered.layouts:
        return f"layouts {', '.join(offered.layouts)}"
    return None


def describe_needs(needs: Resources) -> str:
    """The task's needs in words, the most specific first (``needs 4 GPUs per node``)."""
    parts = []
    if needs.compute_class:
        parts.append(f"the compute class {needs.compute_class}")
    if needs.gpus:
        model = f" {needs.gpu_model}" if needs.gpu_model else ""
        parts.append(f"{needs.gpus_per_node}{model} GPU(s) per node")
    elif needs.gpu_model:
        parts.append(f"{needs.gpu_model} GPUs")
    if needs.nodes > 1:
        parts.append(f"{needs.nodes} nodes")
    if needs.cpus:
        parts.append(f"{needs.cpus} CPU cores per node")
    if needs.memory:
        parts.append(f"{_size(needs.memory)} of memory per node")
    if needs.walltime:
        parts.append(f"a walltime of {_hms(needs.walltime)}")
    if needs.layout:
        parts.append(f"the {needs.layout} layout")
    return "needs " + ", ".join(parts)
