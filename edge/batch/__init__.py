"""Batch systems that start node agents: a port and one module per kind.

``local`` runs agents as processes on this host; ``slurm``, ``sge`` (Grid Engine), ``lsf``
and ``pbs`` submit one batch script per job to a scheduler (see each module for what it
supports; LSF and PBS are contract-tested only). A site picks one with the ``kind`` of
its ``[batch]`` table; :data:`BatchConfig` is the typed union of their config models and
:func:`open_batch` the registry that builds the adapter.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

from pydantic import Field

from edge.batch.local import LocalBatch, LocalBatchConfig
from edge.batch.lsf import LsfBatch, LsfBatchConfig
from edge.batch.pbs import PbsBatch, PbsBatchConfig
from edge.batch.port import BatchState, BatchSubmitError, BatchSystem
from edge.batch.sge import SgeBatch, SgeBatchConfig
from edge.batch.slurm import SlurmBatch, SlurmBatchConfig

BatchConfig: TypeAlias = Annotated[
    LocalBatchConfig | SlurmBatchConfig | LsfBatchConfig | PbsBatchConfig | SgeBatchConfig,
    Field(discriminator="kind"),
]
"""The typed ``[batch]`` table of a site config, chosen by ``kind``."""

BATCH_KINDS = ("local", "slurm", "lsf", "pbs", "sge")


def open_batch(config: BatchConfig, *, isolate_network: bool = False) -> BatchSystem:
    """Build the adapter for ``config.kind``.

    With ``isolate_network`` the agents start under ``unshare -n``. For ``local`` that
    is checked here and raises IsolationUnavailableError when it does not work; for the
    schedulers the check runs in each batch job, on the compute node, because the login
    node's answer says nothing about the nodes.
    """
    if isinstance(config, LocalBatchConfig):
        prefix: list[str] = []
        if isolate_network:
            from edge.batch.isolation import unshare_prefix

            prefix = unshare_prefix()
        return LocalBatch(config, prefix=prefix)
    if isinstance(config, SlurmBatchConfig):
        return SlurmBatch(config, isolate_network=isolate_network)
    if isinstance(config, LsfBatchConfig):
        return LsfBatch(config, isolate_network=isolate_network)
    if isinstance(config, PbsBatchConfig):
        return PbsBatch(config, isolate_network=isolate_network)
    if isinstance(config, SgeBatchConfig):
        return SgeBatch(config, isolate_network=isolate_network)
    raise ValueError(f"unknown batch system {config!r}: use one of {', '.join(BATCH_KINDS)}")


__all__ = [
    "BATCH_KINDS",
    "BatchConfig",
    "BatchState",
    "BatchSubmitError",
    "BatchSystem",
    "LocalBatchConfig",
    "LsfBatchConfig",
    "PbsBatchConfig",
    "SgeBatchConfig",
    "SlurmBatchConfig",
    "open_batch",
]
