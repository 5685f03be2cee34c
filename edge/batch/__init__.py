"""Batch systems that start node agents: a port and one module per kind.

Only ``local`` exists so far; ``slurm``, ``lsf`` and ``pbs`` slot in as further modules
with their own config model, added to :data:`BatchConfig` (then a discriminated union
on ``kind``) and to :func:`open_batch`.
"""

from __future__ import annotations

from edge.batch.local import LocalBatch, LocalBatchConfig
from edge.batch.port import BatchState, BatchSubmitError, BatchSystem

BatchConfig = LocalBatchConfig
"""The typed ``[batch]`` table of a site config."""


def open_batch(config: BatchConfig, *, isolate_network: bool = False) -> BatchSystem:
    """Build the adapter for ``config.kind``.

    With ``isolate_network`` the agents start under ``unshare -n``; raises
    IsolationUnavailableError when that does not work here.
    """
    prefix: list[str] = []
    if isolate_network:
        from edge.batch.isolation import unshare_prefix

        prefix = unshare_prefix()
    if config.kind == "local":
        return LocalBatch(config, prefix=prefix)
    raise ValueError(f"unknown batch system {config.kind!r}: use local")


__all__ = [
    "BatchConfig",
    "BatchState",
    "BatchSubmitError",
    "BatchSystem",
    "LocalBatchConfig",
    "open_batch",
]
