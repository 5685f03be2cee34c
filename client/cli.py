"""``hpo``: submit and follow HPO tasks (options mirror PanDA's ``phpo``), or run the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from client.http import ApiClient, ApiError
from client.settings import ClientConfig, load_config, save_config
from client.submission import SubmissionInputError, build_submission, load_json_config
from client.watch import watch as watch_task

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console()
err = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option("--url", help="server URL (or HPO_URL)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="bearer token (or HPO_TOKEN)")]


def _client(url: str | None, token: str | None) -> ApiClient:
    config = load_config(url, token)
    if not config.token:
        err.print("[red]no token[/]: pass --token, set HPO_TOKEN, or run `hpo login`")
        raise typer.Exit(2)
    return ApiClient(config.url, config.token)


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error[/] {exc}")
    return typer.Exit(2 if isinstance(exc, SubmissionInputError) else 1)


@app.command()
def login(
    url: Annotated[str, typer.Option("--url", help="server URL")],
    token: Annotated[str, typer.Option("--token", prompt=True, hide_input=True)],
) -> None:
    """Check a token against the server and remember both."""
    try:
        with ApiClient(url, token) as client:
            who = client.whoami()
    except ApiError as exc:
        raise _fail(exc) from None
    path = save_config(ClientConfig(url=url, token=token))
    console.print(f"logged in as [bold]{who['owner']}[/]; settings saved in {path}")


@app.command()
def submit(
    load_json: Annotated[Path | None, typer.Option("--loadJson", help="phpo JSON config")] = None,
    name: Annotated[str, typer.Option("--name", help="a name for the task")] = "",
    n_parallel: Annotated[int | None, typer.Option("--nParallelEvaluation")] = None,
    max_points: Annotated[int | None, typer.Option("--maxPoints")] = None,
    max_jobs: Annotated[int | None, typer.Option("--maxEvaluationJobs")] = None,
    per_job: Annotated[int | None, typer.Option("--maxPointsPerEvaluationJob")] = None,
    per_iteration: Annotated[int | None, typer.Option("--nPointsPerIteration")] = None,
    min_unevaluated: Annotated[int | None, typer.Option("--minUnevaluatedPoints")] = None,
    steering_container: Annotated[str | None, typer.Option("--steeringContainer")] = None,
    steering_exec: Annotated[str | None, typer.Option("--steeringExec")] = None,
    search_space_file: Annotated[str | None, typer.Option("--searchSpaceFile")] = None,
    evaluation_container: Annotated[str | None, typer.Option("--evaluationContainer")] = None,
    evaluation_exec: Annotated[str | None, typer.Option("--evaluationExec")] = None,
    evaluation_input: Annotated[str | None, typer.Option("--evaluationInput")] = None,
    evaluation_training: Annotated[str | None, typer.Option("--evaluationTrainingData")] = None,
    evaluation_output: Annotated[str | None, typer.Option("--evaluationOutput")] = None,
    evaluation_meta: Annotated[str | None, typer.Option("--evaluationMeta")] = None,
    evaluation_metrics: Annotated[str | None, typer.Option("--evaluationMetrics")] = None,
    training_ds: Annotated[str | None, typer.Option("--trainingDS")] = None,
    checkpoint_save: Annotated[str | None, typer.Option("--checkPointToSave")] = None,
    checkpoint_load: Annotated[str | None, typer.Option("--checkPointToLoad")] = None,
    checkpoint_interval: Annotated[int | None, typer.Option("--checkPointInterval")] = None,
    segment_spec: Annotated[str | None, typer.Option("--segmentSpecFile")] = None,
    site: Annotated[str | None, typer.Option("--site")] = None,
    architecture: Annotated[str | None, typer.Option("--architecture")] = None,
    follow: Annotated[bool, typer.Option("--watch", help="follow the task")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit a task; files of the current directory travel with it, as with phpo."""
    overrides: dict[str, Any] = {
        "nParallelEvaluation": n_parallel,
        "maxPoints": max_points,
        "maxEvaluationJobs": max_jobs,
        "maxPointsPerEvaluationJob": per_job,
        "nPointsPerIteration": per_iteration,
        "minUnevaluatedPoints": min_unevaluated,
        "steeringContainer": steering_container,
        "steeringExec": steering_exec,
        "searchSpaceFile": search_space_file,
        "evaluationContainer": evaluation_container,
        "evaluationExec": evaluation_exec,
        "evaluationInput": evaluation_input,
        "evaluationTrainingData": evaluation_training,
        "evaluationOutput": evaluation_output,
        "evaluationMeta": evaluation_meta,
        "evaluationMetrics": evaluation_metrics,
        "trainingDS": training_ds,
        "checkPointToSave": checkpoint_save,
        "checkPointToLoad": checkpoint_load,
        "checkPointInterval": checkpoint_interval,
        "segmentSpecFile": segment_spec,
        "site": site,
        "architecture": architecture,
    }
    try:
        config = load_json_config(load_json) if load_json else {}
        body = build_submission(config, overrides, Path.cwd(), name=name)
        with _client(url, token) as client:
            task = client.submit(body)
            console.print(f"submitted [bold]{task['id']}[/]")
            if follow:
                final = watch_task(client, task["id"], console)
                raise typer.Exit(0 if final["status"] == "done" else 1)
    except (ApiError, SubmissionInputError) as exc:
        raise _fail(exc) from None


@app.command()
def status(
    task_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show a task: status, progress and the best point (or the Pareto front)."""
    try:
        with _client(url, token) as client:
            task = client.task(task_id)
    except ApiError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(task, indent=2))
        return
    p = task["progress"]
    console.print(
        f"[bold]{task['id']}[/] {task['name']}  status: {task['status']} {task['reason']}"
    )
    console.print(
        f"points {p['points']}/{p['max_points']}: {p['evaluated']} evaluated, "
        f"{p['failed']} failed, {p['pending']} pending, {p['unevaluated']} waiting; "
        f"jobs {p['jobs']} ({p['active_jobs']} active)"
    )
    if task.get("best"):
        console.print(f"best loss {task['best']['loss']:.6g} at {task['best']['params']}")
    front = task.get("pareto_front")
    if front:
        console.print(f"Pareto front ({len(front)} points):")
        for point in front:
            losses = ", ".join(f"{v:.6g}" for v in point["loss"])
            console.print(escape(f"  [{losses}] at {point['params']}  ({point['point_id']})"))


@app.command("list")
def list_tasks(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List your tasks, newest first."""
    try:
        with _client(url, token) as client:
            for task in client.tasks():
                best = "-" if task["best_loss"] is None else f"{task['best_loss']:.5g}"
                console.print(f"{task['id']}  {task['status']:<10} best {best:<10} {task['name']}")
    except ApiError as exc:
        raise _fail(exc) from None


@app.command()
def watch(task_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Follow a task with a progress bar until it ends."""
    try:
        with _client(url, token) as client:
            final = watch_task(client, task_id, console)
    except ApiError as exc:
        raise _fail(exc) from None
    raise typer.Exit(0 if final["status"] == "done" else 1)


@app.command()
def cancel(task_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a task; running payloads are stopped."""
    try:
        with _client(url, token) as client:
            task = client.cancel(task_id)
    except ApiError as exc:
        raise _fail(exc) from None
    console.print(f"{task['id']}: {task['status']}")


@app.command()
def demo(
    points: Annotated[int, typer.Option(help="points to evaluate")] = 20,
    parallel: Annotated[int, typer.Option(help="evaluations at once")] = 2,
    home: Annotated[Path | None, typer.Option(help="state directory (default $HPO_HOME)")] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="keep the dashboard up after the task, until Ctrl-C")
    ] = False,
) -> None:
    """Run a whole HPO task on this machine: no server to install."""
    from client.demo import run_demo

    raise typer.Exit(run_demo(console, points=points, parallel=parallel, home=home, serve=serve))


artifacts_app = typer.Typer(no_args_is_help=True, help="A task's stored files.")
app.add_typer(artifacts_app, name="artifacts")
PointOpt = Annotated[int | None, typer.Option("--point", help="only this point (its index)")]
SegmentOpt = Annotated[str | None, typer.Option("--segment", help="only this segment")]
KindOpt = Annotated[str | None, typer.Option("--kind", help="metrics, log, meta or checkpoint")]


def _artifacts(
    task_id: str, url: str | None, token: str | None, **where: Any
) -> list[dict[str, Any]]:
    from client.artifacts import KINDS, select

    if where.get("kind") not in (None, *KINDS):
        err.print(f"[red]--kind[/] is one of {', '.join(KINDS)}")
        raise typer.Exit(2)
    try:
        with _client(url, token) as client:
            return select(task_id, client.artifacts(task_id), **where)
    except ApiError as exc:
        raise _fail(exc) from None


@artifacts_app.command("ls")
def artifacts_ls(
    task_id: str,
    point: PointOpt = None,
    segment: SegmentOpt = None,
    kind: KindOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List a task's artifacts: point, kind, size and whether storage verified them."""
    from client.artifacts import table

    items = _artifacts(task_id, url, token, point=point, segment=segment, kind=kind)
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    console.print(table(items))
    console.print(f"{len(items)} artifact(s), {sum(int(i['size']) for i in items)} bytes")


@app.command()
def download(
    task_id: str,
    point: PointOpt = None,
    segment: SegmentOpt = None,
    kind: KindOpt = None,
    dest: Annotated[
        Path | None, typer.Option("--dest", help="directory (default ./<task id>)")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a task's artifacts (or one point's, or one kind) with a progress bar."""
    from client.artifacts import DownloadError
    from client.artifacts import download as fetch

    items = _artifacts(task_id, url, token, point=point, segment=segment, kind=kind)
    if not items:
        err.print("[red]no artifact matches[/]; see `hpo artifacts ls TASK`")
        raise typer.Exit(1)
    try:
        written = fetch(items, dest or Path.cwd() / task_id, console)
    except DownloadError as exc:
        raise _fail(exc) from None
    console.print(f"{len(written)} file(s) in {(dest or Path.cwd() / task_id)}")


from client import export as _export  # noqa: E402 - after the app it registers with

app.command("export")(_export.export)
app.command("mlflow")(_export.mlflow)


def main() -> None:
    app()
