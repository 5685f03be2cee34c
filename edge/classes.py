"""The compute classes a site declares in its heartbeat.

A site admin lists them in the config's ``[[compute_classes]]`` (the hardware of each
kind of node jobs run on); without any, the site declares one class, ``default``,
read from its ``[batch]``: ``gpus_per_node`` (for a scheduler, or ``per_gpu`` on
``local``; else none), ``nodes``, ``layout`` and ``walltime``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.domain.resources import ComputeClass

if TYPE_CHECKING:
    from edge.config import SiteConfig

DEFAULT_CLASS = "default"


def declared_classes(config: SiteConfig) -> list[ComputeClass]:
    if config.compute_classes:
        return list(config.compute_classes)
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
