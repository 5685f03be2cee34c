"""The compute classes a site declares in its heartbeat, and their batch options.

A site admin lists them in the config's ``[[compute_classes]]`` (the hardware of each
kind of node jobs run on, and optionally the ``batch`` options that send a job to those
nodes: :mod:`edge.batch.options`); without any, the site declares one class,
``default``, read from its ``[batch]``: ``gpus_per_node`` (for a scheduler, or
``per_gpu`` on ``local``; else none), ``nodes``, ``layout`` and ``walltime``. The batch
options stay on the site: the heartbeat carries the hardware only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.batch.options import ClassBatchOptions
from shared.domain.resources import ComputeClass

if TYPE_CHECKING:
    from edge.config import SiteConfig

DEFAULT_CLASS = "default"


class SiteComputeClass(ComputeClass):
    """One ``[[compute_classes]]`` entry: a declared class plus its batch options."""

    batch: ClassBatchOptions | None = None

    def declared(self) -> ComputeClass:
        """The class as the heartbeat declares it (without the site's batch options)."""
        return ComputeClass.model_validate(self.model_dump(exclude={"batch"}))


def declared_classes(config: SiteConfig) -> list[ComputeClass]:
    if config.compute_classes:
        return [c.declared() for c in config.compute_classes]
    batch = config.batch
    gpus = batch.gpus_per_node if batch.kind != "local" or batch.layout == "per_gpu" else 0
    walltime = getattr(batch, "walltime", None)
    return [
        ComputeClass(
            name=DEFAULT_CLASS,
            gpus_per_node=gpus or 0,
            max_nodes=getattr(batch, "nodes", 1) or 1,
            layouts=[batch.layout],
            max_walltime=int(walltime.total_seconds()) if walltime else None,
        )
    ]


def class_batch_options(config: SiteConfig, name: str | None) -> ClassBatchOptions | None:
    """The batch options of the class ``name`` the broker chose; None when the class
    has none (or is not one of this site's: the ``[batch]`` table alone then)."""
    for declared in config.compute_classes:
        if declared.name == name:
            return declared.batch
    return None
