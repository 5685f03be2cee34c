"""Keeping a central MLflow tracking server in step with every task (``HPO_MLFLOW_URL``).

Results mark their task dirty; the storage service's reconcile pass syncs each dirty or
active task at most every ``mlflow_sync_interval`` seconds, with the same writer as
``hpo mlflow`` (:func:`shared.exports.mlflow_experiment.write_mlflow`, which only
touches runs whose point changed), reading the metrics tarballs from the artifact store,
and records the experiment's URL as the task's ``mlflow`` link. MLflow is the memory of
what was synced: at start, the experiments not yet marked final are synced again, so a
task that ended while the mirror was down or missed its last message is finished off.
An MLflow server that does not answer costs a warning and a retry at the next pass.

Run one storage process with the mirror: two would create the same runs twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from services.context import Context
from services.storage.records import task_record
from shared.domain.models import ACTIVE_TASK_STATES, Task
from shared.exports.record import PointRecord
from shared.startup import StartupError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

ROUTING_KEYS = ("point.evaluated", "point.failed", "task.finished", "task.cancelled")


def _client(url: str) -> MlflowClient:
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise StartupError(
            "HPO_MLFLOW_URL needs MLflow's client: pip install 'hpo-relay[mlflow]'"
        ) from None
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return MlflowClient(tracking_uri=url)


class MlflowMirror:
    def __init__(self, ctx: Context, url: str, interval: float) -> None:
        self.ctx = ctx
        self.url = url.rstrip("/")
        self.interval = interval
        self.client = _client(url)
        self.dirty: set[str] = set()
        self._synced_at: dict[str, float] = {}
        self._recovered = False

    def mark(self, task_id: str) -> None:
        self.dirty.add(task_id)

    async def reconcile(self) -> None:
        """Sync every active task whose last sync is ``interval`` old, and every ended
        task marked dirty (its last results, or an experiment left unfinished)."""
        if not self._recovered:
            unfinished = await asyncio.to_thread(self._unfinished_experiments)
            if unfinished is not None:
                self.dirty |= unfinished
                self._recovered = True
        due = {t.id: t for t in await self.ctx.store.tasks.list_active()}
        now = time.monotonic()
        due = {k: t for k, t in due.items() if now - self._synced_at.get(k, -1e9) >= self.interval}
        for task_id in sorted(self.dirty - set(due)):
            task = await self.ctx.store.tasks.get(task_id)
            if task is None:
                self.dirty.discard(task_id)
            elif task.status not in ACTIVE_TASK_STATES:
                due[task_id] = task
        for task in due.values():
            await self.sync(task)

    async def sync(self, task: Task) -> None:
        self.dirty.discard(task.id)
        self._synced_at[task.id] = time.monotonic()
        try:
            record = await task_record(self.ctx.store, task)
            loop = asyncio.get_running_loop()

            def fetch(point: PointRecord) -> bytes | None:
                if point.metrics_key is None:
                    return None
                read = self.ctx.artifacts.get_bytes(point.metrics_key)
                return asyncio.run_coroutine_threadsafe(read, loop).result(timeout=600)

            from shared.exports.mlflow_experiment import write_mlflow

            result = await asyncio.to_thread(write_mlflow, record, self.client, fetch=fetch)
        except Exception as exc:
            self.dirty.add(task.id)
            log.warning("MLflow mirror of task %s failed, retried later: %s", task.id, exc)
            return
        if task.status not in ACTIVE_TASK_STATES:
            self._synced_at.pop(task.id, None)
        link = f"{self.url}/#/experiments/{result.experiment_id}"
        if task.links.get("mlflow") != link:
            await self.ctx.store.tasks.set_link(task.id, "mlflow", link)

    def _unfinished_experiments(self) -> set[str] | None:
        try:
            found = self.client.search_experiments(filter_string="tags.hpo_final = 'false'")
        except Exception as exc:
            log.warning("MLflow mirror: experiments not listed, retried later: %s", exc)
            return None
        return {e.tags["hpo_task_id"] for e in found if "hpo_task_id" in e.tags}
