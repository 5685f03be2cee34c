"""``hpo export`` (an Optuna study) and ``hpo mlflow`` (an MLflow experiment) of a task.

Both read the task's record (``GET /api/v1/tasks/{id}/record``) and write it with the
libraries' own APIs, so Optuna's and MLflow's tools open the result unchanged. Both can
be run again: the Optuna study is replaced when asked, the MLflow experiment is synced.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.console import Console

from client.http import ApiClient, ApiError
from client.settings import load_config
from shared.exports.record import PointRecord, TaskRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient

MAX_TARBALL_BYTES = 100 * 1024 * 1024

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="server URL (or HPO_URL)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="bearer token (or HPO_TOKEN)")]


def _record(task_id: str, url: str | None, token: str | None) -> TaskRecord:
    config = load_config(url, token)
    if not config.token:
        err.print("[red]no token[/]: pass --token, set HPO_TOKEN, or run `hpo login`")
        raise typer.Exit(2)
    try:
        with ApiClient(config.url, config.token, timeout=300) as client:
            body = client.call("GET", f"/api/v1/tasks/{task_id}/record")
    except ApiError as exc:
        err.print(f"[red]error[/] {exc}")
        raise typer.Exit(1) from None
    return TaskRecord.model_validate(body)


def export(
    task_id: str,
    optuna_storage: Annotated[
        str,
        typer.Option(
            "--optuna-storage",
            help="Optuna storage URL, e.g. sqlite:///hpo.db or postgresql+psycopg://...",
        ),
    ],
    study_name: Annotated[
        str | None, typer.Option("--study-name", help="default: the task id")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="replace a study of the same name")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Write a task as Optuna studies (one per segment), for optuna-dashboard and
    optuna.visualization."""
    import optuna

    from shared.exports.optuna_study import StudyExistsError, write_optuna

    record = _record(task_id, url, token)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        names = write_optuna(record, optuna_storage, name=study_name, replace=replace)
    except StudyExistsError as exc:
        err.print(f"[red]error[/] {exc} (--replace, or --study-name)")
        raise typer.Exit(1) from None
    except (ImportError, ValueError, optuna.exceptions.OptunaError) as exc:
        err.print(f"[red]error[/] cannot write to {optuna_storage}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"{len(record.points)} trials in {', '.join(names)}")
    console.print(f"view them: optuna-dashboard {optuna_storage}")


def mlflow(
    task_id: str,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="MLflow tracking URI (default: MLflow's own, $MLFLOW_TRACKING_URI or ./mlflow.db)",
        ),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="default: hpo-relay/<owner>/<task>")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Write a task as an MLflow experiment, one run per point, with the payloads' own
    MLflow runs merged in; run it again to bring the experiment up to date."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        err.print("[red]error[/] hpo mlflow needs MLflow: pip install 'hpo-relay[mlflow]'")
        raise typer.Exit(2) from None
    from shared.exports.mlflow_experiment import write_mlflow

    record = _record(task_id, url, token)
    # one line per run otherwise; the summary below names the experiment
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    client = MlflowClient(tracking_uri=tracking_uri)
    with httpx.Client(timeout=120, follow_redirects=True) as http:
        result = write_mlflow(
            record, client, experiment=experiment, fetch=lambda point: _download(http, point)
        )
    console.print(
        f"experiment {result.experiment_id} at {client.tracking_uri}: {result.created} runs "
        f"created, {result.updated} updated, {result.unchanged} unchanged, "
        f"{result.payload_runs} payload runs merged"
    )
    link = _link(client, result.experiment_id)
    console.print(f"view it: {link}" if link else "view it: mlflow ui (in this directory)")


def _download(http: httpx.Client, point: PointRecord) -> bytes | None:
    if not point.metrics_url:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        with http.stream("GET", point.metrics_url) as reply:
            reply.raise_for_status()
            for chunk in reply.iter_bytes():
                size += len(chunk)
                if size > MAX_TARBALL_BYTES:
                    err.print(f"metrics of {point.id} skipped: over {MAX_TARBALL_BYTES} bytes")
                    return None
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        err.print(f"metrics of {point.id} not downloaded: {exc}")
        return None
    return b"".join(chunks)


def _link(client: MlflowClient, experiment_id: str) -> str | None:
    uri = str(client.tracking_uri)
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}"
    return None
