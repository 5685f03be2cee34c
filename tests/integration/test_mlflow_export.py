"""``hpo mlflow``: a task as an MLflow experiment on a real ``mlflow server``, read back
with MlflowClient: one run per point, the payloads' own runs merged in as children,
and a second run of the command changing nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from tests.integration.central import Central, central, file_artifacts
from tests.integration.export_task import ExportedTask, hpo, loss_of, run_task
from tests.integration.mlflow_server import mlflow_server

pytestmark = [pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
async def system(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        yield c


def json_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def check_experiment(client: MlflowClient, task: ExportedTask) -> None:
    experiment = client.get_experiment_by_name(f"hpo-relay/{task.owner}/{task.task_id}")
    assert experiment is not None
    assert experiment.tags["hpo_task_id"] == task.task_id
    assert experiment.tags["hpo_final"] == "true"
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    points = {r.data.tags["hpo_point"]: r for r in runs if r.data.tags["hpo_kind"] == "point"}
    children = [r for r in runs if r.data.tags["hpo_kind"] == "payload"]
    assert set(points) == {p["id"] for p in task.points}
    for point in task.points:
        run = points[point["id"]]
        assert run.data.params == {k: json_text(v) for k, v in point["params"].items()}
        assert run.data.metrics["attempts"] == point["attempts"]
        assert run.data.tags["hpo_status"] == point["status"]
        if point["status"] == "failed":
            assert run.info.status == "FAILED"
            assert run.data.tags["hpo_last_error"] == "CUDA out of memory"
            continue
        assert run.info.status == "FINISHED"
        assert run.data.metrics["loss"] == pytest.approx(loss_of(point["params"]))
        assert run.data.tags["hpo_site"] == "siteA" and run.data.tags["hpo_host"] == "node7"
        assert run.info.start_time <= run.info.end_time
        curve = client.get_metric_history(run.info.run_id, "intermediate")
        assert sorted(m.step for m in curve) == [0, 1, 2]
    # each evaluated point's metrics tarball held one payload run: now its child
    assert len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {
        points[p["id"]].info.run_id for p in task.points if p["status"] == "evaluated"
    }
    for child in children:
        assert child.data.params == {"layers": "3"}
        history = client.get_metric_history(child.info.run_id, "acc")
        assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.6), (2, 0.7)]
        assert child.info.run_name == "train"
        assert child.data.tags["hpo_payload_experiment"] == "payload"


async def test_hpo_mlflow_writes_the_task_to_a_tracking_server(
    system: Central, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        httpx.AsyncClient(base_url=system.api_url, timeout=30) as http,
        mlflow_server(tmp_path / "mlflow") as tracking,
    ):
        task = await run_task(system, http, tarballs=True)
        code, out, err = await hpo(
            system.api_url, task.token, "mlflow", task.task_id, "--tracking-uri", tracking
        )
        assert code == 0, err
        assert "4 runs created, 0 updated, 0 unchanged, 3 payload runs merged" in out
        assert f"{tracking}/#/experiments/" in out
        client = MlflowClient(tracking_uri=tracking)
        await asyncio.to_thread(check_experiment, client, task)

        code, out, err = await hpo(
            system.api_url, task.token, "mlflow", task.task_id, "--tracking-uri", tracking
        )
        assert code == 0, err
        assert "0 runs created, 0 updated, 4 unchanged, 0 payload runs merged" in out
        await asyncio.to_thread(check_experiment, client, task)


async def test_storage_keeps_a_central_mlflow_server_in_step(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    """With HPO_MLFLOW_URL the storage service mirrors every task by itself, and the
    task's view links to its experiment."""
    async with (
        mlflow_server(tmp_path / "mlflow") as tracking,
        central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
            mlflow_url=tracking,
            mlflow_sync_interval=0.5,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=30) as http,
    ):
        task = await run_task(system, http, tarballs=True)
        client = MlflowClient(tracking_uri=tracking)
        headers = {"Authorization": f"Bearer {task.token}"}

        async def mirrored() -> str | None:
            view = (await http.get(f"/api/v1/tasks/{task.task_id}", headers=headers)).json()
            experiment = await asyncio.to_thread(
                client.get_experiment_by_name, f"hpo-relay/{task.owner}/{task.task_id}"
            )
            if experiment is None or experiment.tags.get("hpo_final") != "true":
                return None
            runs = await asyncio.to_thread(client.search_runs, [experiment.experiment_id])
            if len(runs) != 4 + 3 or "mlflow" not in view["links"]:
                return None
            return str(experiment.experiment_id)

        while (experiment_id := await mirrored()) is None:
            await asyncio.sleep(0.5)
        view = (await http.get(f"/api/v1/tasks/{task.task_id}", headers=headers)).json()
        assert view["links"]["mlflow"] == f"{tracking}/#/experiments/{experiment_id}"
        await asyncio.to_thread(check_experiment, client, task)
