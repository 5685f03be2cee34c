"""Writing a task into MLflow as one experiment with one run per point, so that
``mlflow ui`` shows the whole search (runs table, parallel coordinates, metric charts).

A point's run has the point's parameters as params; ``loss`` (or ``loss_0``,
``loss_1``, ... for several objectives) and ``attempts`` as metrics; the intermediate
values as the ``intermediate`` metric's history by step; status, site, host, job,
segment, last error and pruned step as tags; the payload's start and the result as
the run's start and end. The MLflow runs the payload logged itself (in its metrics
tarball, :mod:`.mlflow_payload`) become child runs of the point's run.

Writing is a sync, not a copy: runs are found again by their ``hpo_point`` tag, a run
whose point has not changed since (the ``hpo_digest`` tag) is left alone, a changed one
is updated in place (params never change once logged; only steps not yet logged are
added), and payload runs are merged once per metrics tarball. So ``hpo mlflow`` can be
run again on a task still running, and the storage service keeps a central server in
step with every task the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from shared.domain.models import PointStatus, TaskStatus
from shared.exports.mlflow_payload import PayloadRun, payload_runs
from shared.exports.record import PointRecord, TaskRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient

_MAX_VALUE = 5000  # MLflow's param and tag value limits (6000 and 8000 characters)
_BATCH = 900  # log_batch takes at most 1000 metrics
_FINAL = {TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED}
_RUN_STATUS = {
    PointStatus.EVALUATED: "FINISHED",
    PointStatus.FAILED: "FAILED",
}

Fetch = Callable[[PointRecord], bytes | None]
"""The metrics tarball of a point (``metrics_key``/``metrics_url``), or None."""

T = TypeVar("T")


@dataclass
class SyncResult:
    experiment_id: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    payload_runs: int = 0
    run_ids: dict[str, str] = field(default_factory=dict)
    """Point id -> run id."""


def experiment_name(record: TaskRecord) -> str:
    return f"hpo-relay/{record.owner}/{record.id}"


def write_mlflow(
    record: TaskRecord,
    client: MlflowClient,
    *,
    experiment: str | None = None,
    fetch: Fetch | None = None,
) -> SyncResult:
    """Bring the experiment of ``record`` (created if missing) in step with it."""
    experiment_id = _experiment(client, experiment or experiment_name(record), record)
    result = SyncResult(experiment_id=experiment_id)
    existing = _point_runs(client, experiment_id)
    for point in record.points:
        run = existing.get(point.id)
        digest = _digest(point)
        if run is not None and run.data.tags.get("hpo_digest") == digest:
            result.unchanged += 1
            result.run_ids[point.id] = run.info.run_id
            continue
        run_id = _write_point(client, experiment_id, record, point, run)
        client.set_tag(run_id, "hpo_digest", digest)
        result.run_ids[point.id] = run_id
        if run is None:
            result.created += 1
        else:
            result.updated += 1
        merged = run.data.tags.get("hpo_metrics_key") if run is not None else None
        if fetch is not None and point.metrics_key and point.metrics_key != merged:
            tarball = fetch(point)
            if tarball is not None:
                for child in payload_runs(tarball):
                    _write_payload_run(client, experiment_id, run_id, child)
                    result.payload_runs += 1
                client.set_tag(run_id, "hpo_metrics_key", point.metrics_key)
    client.set_experiment_tag(experiment_id, "hpo_status", record.status.value)
    client.set_experiment_tag(experiment_id, "hpo_final", str(record.status in _FINAL).lower())
    return result


def _experiment(client: MlflowClient, name: str, record: TaskRecord) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    return str(
        client.create_experiment(
            name,
            tags={
                "hpo_task_id": record.id,
                "hpo_owner": record.owner,
                "hpo_task_name": record.name,
                "hpo_directions": ",".join(record.directions),
                "mlflow.note.content": (
                    f"hpo-relay task {record.id} ({record.name or 'unnamed'}) of {record.owner}"
                ),
            },
        )
    )


def _point_runs(client: MlflowClient, experiment_id: str) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string="tags.hpo_kind = 'point'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            runs[run.data.tags["hpo_point"]] = run
        token = page.token
        if not token:
            return runs


def _digest(point: PointRecord) -> str:
    fields = point.model_dump(mode="json", exclude={"metrics_url"})
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _write_point(
    client: MlflowClient,
    experiment_id: str,
    record: TaskRecord,
    point: PointRecord,
    run: Any | None,
) -> str:
    from mlflow.entities import Metric, Param, RunTag

    name = f"{point.segment}.{point.index}" if record.segmented else f"point {point.index}"
    tags = {
        "hpo_kind": "point",
        "hpo_point": point.id,
        "hpo_status": point.status.value,
        "hpo_segment": point.segment,
        "hpo_index": str(point.index),
        "hpo_site": point.site or "",
        "hpo_host": point.host,
        "hpo_job": point.job_id or "",
        "hpo_last_error": point.last_error[:_MAX_VALUE],
        "hpo_pruned_step": "" if point.pruned_step is None else str(point.pruned_step),
    }
    if run is None:
        run_id = str(
            client.create_run(
                experiment_id, start_time=_ms(point.started or point.created), run_name=name
            ).info.run_id
        )
        params = [Param(k, _text(v)) for k, v in point.params.items()]
        logged_steps: set[int] = set()
    else:
        run_id = str(run.info.run_id)
        params = []
        logged_steps = {m.step for m in client.get_metric_history(run_id, "intermediate")}
    when = int((point.evaluated or point.started or point.created).timestamp() * 1000)
    metrics = [Metric("attempts", float(point.attempts), when, 0)]
    metrics += [Metric(key, value, when, 0) for key, value in _losses(point)]
    metrics += [
        Metric("intermediate", value, when, step)
        for step, value in sorted(point.intermediate.items())
        if step not in logged_steps
    ]
    tag_list = [RunTag(k, v) for k, v in tags.items()]
    for chunk_params, chunk_metrics, chunk_tags in _chunks(params, metrics, tag_list):
        client.log_batch(run_id, metrics=chunk_metrics, params=chunk_params, tags=chunk_tags)
    status = _RUN_STATUS.get(point.status)
    if status is not None:
        client.set_terminated(run_id, status, end_time=_ms(point.evaluated) or when)
    return run_id


def _write_payload_run(
    client: MlflowClient, experiment_id: str, parent: str, child: PayloadRun
) -> None:
    from mlflow.entities import Metric, Param, RunTag

    run = client.create_run(experiment_id, start_time=child.start_time, run_name=child.name)
    run_id = run.info.run_id
    tags = {
        k: v[:_MAX_VALUE]
        for k, v in child.tags.items()
        if k not in ("mlflow.parentRunId", "mlflow.runName")
    }
    tags |= {
        "mlflow.parentRunId": parent,
        "hpo_kind": "payload",
        "hpo_payload_run": child.run_id,
        "hpo_payload_experiment": child.experiment,
    }
    params = [Param(k, v[:_MAX_VALUE]) for k, v in child.params.items()]
    metrics = [
        Metric(key, m.value, m.timestamp, m.step)
        for key, history in child.metrics.items()
        for m in history
    ]
    tag_list = [RunTag(k, v) for k, v in tags.items()]
    for chunk_params, chunk_metrics, chunk_tags in _chunks(params, metrics, tag_list):
        client.log_batch(run_id, metrics=chunk_metrics, params=chunk_params, tags=chunk_tags)
    status = child.status if child.status in ("FINISHED", "FAILED", "KILLED") else "FINISHED"
    client.set_terminated(run_id, status, end_time=child.end_time)


def _losses(point: PointRecord) -> list[tuple[str, float]]:
    if point.loss is None:
        return []
    if isinstance(point.loss, list):
        return [(f"loss_{i}", float(v)) for i, v in enumerate(point.loss)]
    return [("loss", float(point.loss))]


def _chunks(
    params: Sequence[T], metrics: Sequence[Any], tags: Sequence[Any]
) -> Iterator[tuple[list[T], list[Any], list[Any]]]:
    """Batches within log_batch's limits (100 params, 1000 metrics, 100 tags each)."""
    first = True
    p, m, t = list(params), list(metrics), list(tags)
    while first or p or m or t:
        first = False
        yield p[:90], m[:_BATCH], t[:90]
        p, m, t = p[90:], m[_BATCH:], t[90:]


def _text(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:_MAX_VALUE]


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
