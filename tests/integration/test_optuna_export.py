"""``hpo export --optuna-storage``: the task as Optuna studies that Optuna, its
visualisations and optuna-dashboard read unchanged, from SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import optuna
import psycopg
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tests.integration.central import Central, central, file_artifacts
from tests.integration.export_task import hpo, loss_of, run_task

pytestmark = [pytest.mark.mongo]


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


@pytest.fixture
async def http(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
        yield client


@pytest.fixture
def postgres_storage(postgres_url: str, unique: str) -> Iterator[str]:
    """A fresh database for this test, dropped afterwards."""
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{unique}"')
    base = postgres_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{unique}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{unique}" WITH (FORCE)')


def check_study(study: optuna.Study, task_points: list[dict[str, object]]) -> None:
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == len(task_points) == 4
    by_point = {t.user_attrs["hpo_point_id"]: t for t in trials}
    for point in task_points:
        trial = by_point[str(point["id"])]
        assert trial.params == point["params"]
        assert trial.user_attrs["hpo_attempts"] == point["attempts"]
        if point["status"] == "failed":
            assert trial.state is TrialState.FAIL and trial.value is None
            assert trial.user_attrs["hpo_last_error"] == "CUDA out of memory"
            assert trial.user_attrs["hpo_loss"] == 1e10
            continue
        assert trial.state is TrialState.COMPLETE
        assert math.isclose(trial.value, loss_of(dict(point["params"])))  # type: ignore[arg-type]
        assert trial.intermediate_values == {
            s: pytest.approx(trial.value + 1.0 / (s + 1)) for s in range(3)
        }
        assert trial.user_attrs["hpo_site"] == "siteA"
        assert trial.user_attrs["hpo_host"] == "node7"
        assert trial.datetime_start is not None and trial.datetime_complete is not None
        assert trial.datetime_start <= trial.datetime_complete
    dists = trials[1].distributions
    assert isinstance(dists["x"], FloatDistribution) and (dists["x"].low, dists["x"].high) == (0, 1)
    assert isinstance(dists["n"], IntDistribution) and (dists["n"].low, dists["n"].high) == (1, 4)
    assert dists["kind"] == CategoricalDistribution(["a", "b"])
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    assert study.best_trial.value == min(t.value for t in done if t.value is not None)


def visualise(study: optuna.Study) -> None:
    """Optuna's own plots take the study as they take one of their own."""
    history = optuna.visualization.plot_optimization_history(study)
    assert len(history.data[0].x) == 3  # the completed trials
    curves = optuna.visualization.plot_intermediate_values(study)
    assert len(curves.data) == 3
    assert optuna.visualization.plot_parallel_coordinate(study).data
    assert optuna.visualization.plot_param_importances(study).data


async def test_export_to_sqlite_is_read_by_optuna_and_its_dashboard(
    system: Central, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    task = await run_task(system, http)
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    code, out, err = await hpo(
        system.api_url, task.token, "export", task.task_id, "--optuna-storage", storage
    )
    assert code == 0, err
    assert f"4 trials in {task.task_id}" in out
    study = optuna.load_study(study_name=task.task_id, storage=storage)
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE]
    assert study.user_attrs["hpo_task_id"] == task.task_id
    check_study(study, task.points)
    visualise(study)

    from optuna_dashboard import wsgi

    dashboard = httpx.Client(transport=httpx.WSGITransport(app=wsgi(storage)), base_url="http://d")
    studies = dashboard.get("/api/studies").json()["study_summaries"]
    assert [s["study_name"] for s in studies] == [task.task_id]
    study_id = studies[0]["study_id"]
    detail = dashboard.get(f"/api/studies/{study_id}").json()
    assert len(detail["trials"]) == 4
    assert sorted(t["state"] for t in detail["trials"]) == ["Complete"] * 3 + ["Fail"]
    assert detail["has_intermediate_values"] is True
    importances = dashboard.get(f"/api/studies/{study_id}/param_importances")
    assert importances.status_code == 200, importances.text

    # A second export does not add to the study behind the user's back.
    code, _out, err = await hpo(
        system.api_url, task.token, "export", task.task_id, "--optuna-storage", storage
    )
    assert code == 1 and "exists in this storage" in err
    code, _out, err = await hpo(
        system.api_url, task.token, "export", task.task_id, "--optuna-storage", storage, "--replace"
    )
    assert code == 0, err
    assert len(optuna.load_study(study_name=task.task_id, storage=storage).trials) == 4


@pytest.mark.postgres
async def test_export_to_postgresql_with_two_objectives(
    system: Central, http: httpx.AsyncClient, postgres_storage: str
) -> None:
    task = await run_task(system, http, directions=["minimize", "maximize"])
    code, _out, err = await hpo(
        system.api_url,
        task.token,
        "export",
        task.task_id,
        "--optuna-storage",
        postgres_storage,
        "--study-name",
        "mo",
    )
    assert code == 0, err
    storage = optuna.storages.RDBStorage(postgres_storage)
    try:
        check_two_objectives(optuna.load_study(study_name="mo", storage=storage))
    finally:
        storage.engine.dispose()  # its pooled connections, before the database is dropped


def check_two_objectives(study: optuna.Study) -> None:
    assert study.directions == [
        optuna.study.StudyDirection.MINIMIZE,
        optuna.study.StudyDirection.MAXIMIZE,
    ]
    complete = study.get_trials(states=[TrialState.COMPLETE])
    assert len(complete) == 3
    for trial in complete:
        assert trial.values == pytest.approx([loss_of(trial.params), trial.params["x"]])
        assert trial.intermediate_values == {}  # Optuna reports one value per step
    assert {t.number for t in study.best_trials} <= {t.number for t in complete}
    front = optuna.visualization.plot_pareto_front(study)
    assert sum(len(d.x) for d in front.data) == 3


async def test_another_users_task_is_not_exported(
    system: Central, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    task = await run_task(system, http)
    bob = await system.token("bob", ["user"])
    code, _out, err = await hpo(
        system.api_url,
        bob,
        "export",
        task.task_id,
        "--optuna-storage",
        f"sqlite:///{tmp_path / 'b.db'}",
    )
    assert code == 1 and "404" in err
