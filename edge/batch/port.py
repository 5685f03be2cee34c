"""The batch-system port: how the harvester gets a node agent running for a job.

The harvester calls these from a worker thread (they may run ``sbatch``/``squeue``),
never concurrently for one adapter. Batch ids are opaque strings the adapter returns
from :meth:`BatchSystem.submit`; the harvester stores them in the job directory, so an
adapter must be able to answer :meth:`BatchSystem.poll` for ids issued by an earlier
harvester process (after a restart).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from edge.batch.options import ClassBatchOptions

BatchState = Literal["running", "done", "unknown"]
"""``running`` covers queued; ``unknown`` means "cannot tell now, ask again later"."""


class BatchSubmitError(RuntimeError):
    """The batch system refused or failed the submission; the message says why."""


class BatchSystem(Protocol):
    kind: str

    def submit(self, job_dir: Path, options: ClassBatchOptions | None = None) -> str:
        """Start (or queue) the node agent for ``job_dir``; return the batch id.

        Called once per staged job, right after staging, with the batch options of the
        compute class the job was assigned to (None: the config's alone). Raises
        BatchSubmitError.
        """
        ...

    def submit_worker(self, worker_dir: Path, options: ClassBatchOptions | None = None) -> str:
        """Start (or queue) a late-binding worker agent (layout ``per_gpu``) for the
        worker directory the harvester prepared, with the batch options of the compute
        class whose jobs it takes (None: the config's alone); return the batch id.
        Raises BatchSubmitError."""
        ...

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        """The state of each id, in one call per harvester scan.

        Batched because real schedulers answer for many jobs in one query (one
        ``squeue`` rather than a thousand).
        """
        ...

    def cancel(self, batch_id: str) -> None:
        """Ask the batch system to stop the job; idempotent, best effort."""
        ...
