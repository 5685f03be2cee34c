"""The MLflow runs a payload logged itself, found in its metrics tarball.

A payload that tracks with MLflow offline (the compute node has no network) writes a
local store, an ``mlruns/`` directory in MLflow's file layout or a SQLite
``mlflow.db``, and ships it in the tarball named by ``evaluationMetrics``. This reads
every run of every such store with MLflow's own client, so that the export can merge
them into the point's run.

The tarball is the user's: it is extracted with the ``data`` filter (no absolute
paths, no ``..``, no links out, no devices) into a temporary directory, and refused
beyond a total uncompressed size.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

MAX_EXTRACTED_BYTES = 1024 * 1024 * 1024


class PayloadMetric(BaseModel):
    value: float
    timestamp: int
    step: int


class PayloadRun(BaseModel):
    run_id: str
    name: str
    experiment: str
    status: str
    start_time: int | None
    end_time: int | None
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, list[PayloadMetric]] = Field(default_factory=dict)


def payload_runs(tarball: bytes) -> list[PayloadRun]:
    """Every run in the MLflow stores inside ``tarball``; [] when there is none or the
    tarball cannot be read (the export goes on without them)."""
    with tempfile.TemporaryDirectory(prefix="hpo-payload-") as tmp:
        root = Path(tmp)
        try:
            _extract(tarball, root)
        except (tarfile.TarError, OSError, ValueError) as exc:
            log.warning("metrics tarball not read: %s", exc)
            return []
        runs: list[PayloadRun] = []
        for uri in _stores(root):
            try:
                runs.extend(_read(uri))
            except Exception as exc:  # a store MLflow cannot read: say so, go on
                log.warning("MLflow store %s in a metrics tarball not read: %s", uri, exc)
        return runs


def _extract(data: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        members = tar.getmembers()
        if sum(m.size for m in members if m.isfile()) > MAX_EXTRACTED_BYTES:
            raise ValueError(f"more than {MAX_EXTRACTED_BYTES} bytes once extracted")
        tar.extractall(into, members=members, filter="data")


def _stores(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*")):
        if path.is_dir() and path.name == "mlruns":
            yield f"file://{path}"
        elif path.is_file() and path.suffix == ".db" and _is_mlflow_sqlite(path):
            yield f"sqlite:///{path}"


def _is_mlflow_sqlite(path: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error:
        return False
    return {"experiments", "runs", "metrics"} <= names


@contextlib.contextmanager
def _file_store_allowed() -> Iterator[None]:
    """MLflow 3 refuses its file layout unless told; payloads still write it."""
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old


def _read(uri: str) -> list[PayloadRun]:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    runs: list[PayloadRun] = []
    with _file_store_allowed():
        client = MlflowClient(tracking_uri=uri)
        for experiment in client.search_experiments(view_type=ViewType.ALL):
            for run in client.search_runs(
                [experiment.experiment_id], run_view_type=ViewType.ALL, max_results=10_000
            ):
                metrics = {
                    key: [
                        PayloadMetric(value=m.value, timestamp=m.timestamp, step=m.step)
                        for m in client.get_metric_history(run.info.run_id, key)
                    ]
                    for key in run.data.metrics
                }
                runs.append(
                    PayloadRun(
                        run_id=run.info.run_id,
                        name=run.info.run_name or run.info.run_id,
                        experiment=experiment.name,
                        status=run.info.status,
                        start_time=run.info.start_time,
                        end_time=run.info.end_time,
                        params=dict(run.data.params),
                        tags=dict(run.data.tags),
                        metrics=metrics,
                    )
                )
    return runs
