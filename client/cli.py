"""``hpo``: submit and follow HPO tasks (options mirror PanDA's ``phpo``), or run the demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from client.http import ApiClient, ApiError
from client.listings import jobs, points
from client.render import metrics_text, status_lines
from client.session import TokenOpt, UrlOpt, console, err, fail, make_client
from client.settings import ClientConfig, save_config
from client.submit import print_version, submit
from client.watch import watch as watch_task

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", is_eager=True, callback=print_version
        ),
    ] = False,
) -> None:
    """``hpo``: submit and follow HPO tasks (options mirror PanDA's ``phpo``), or run the demo."""


app.command("submit")(submit)


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
        raise fail(exc) from None
    path = save_config(ClientConfig(url=url, token=token))
    console.print(f"logged in as [bold]{who['owner']}[/]; settings saved in {path}")


@app.command()
def status(
    task_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show a task: status, progress and the best point (or the Pareto front)."""
    try:
        with make_client(url, token) as client:
            task = client.task(task_id)
    except ApiError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(task, indent=2))
        return
    for line in status_lines(task):
        console.print(escape(line))
    if task.get("best"):
        best = task["best"]
        line = f"best loss {best['loss']:.6g} at {best['params']}"
        if best.get("metrics"):
            line += f"  metrics: {metrics_text(best['metrics'])}"
        console.print(escape(line))
    front = task.get("pareto_front")
    if front:
        console.print(f"Pareto front ({len(front)} points):")
        for point in front:
            losses = ", ".join(f"{v:.6g}" for v in point["loss"])
            console.print(escape(f"  [{losses}] at {point['params']}  ({point['point_id']})"))


@app.command("list")
def list_tasks(
    out_ds: Annotated[
        str | None, typer.Option("--outDS", help="only the tasks filed under this outDS")
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List your tasks, newest first."""
    try:
        with make_client(url, token) as client:
            for task in client.tasks(out_ds=out_ds):
                best = "-" if task["best_loss"] is None else f"{task['best_loss']:.5g}"
                line = f"{task['id']}  {task['status']:<10} best {best:<10} {task['name']}"
                if task.get("out_ds") and task["out_ds"].rstrip("/") != task["name"]:
                    line += f"  (outDS {task['out_ds']})"
                console.print(escape(line))
    except ApiError as exc:
        raise fail(exc) from None


@app.command()
def watch(task_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Follow a task with a progress bar until it ends."""
    try:
        with make_client(url, token) as client:
            final = watch_task(client, task_id, console)
    except ApiError as exc:
        raise fail(exc) from None
    raise typer.Exit(0 if final["status"] == "done" else 1)


@app.command()
def cancel(task_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a task; running payloads are stopped."""
    try:
        with make_client(url, token) as client:
            task = client.cancel(task_id)
    except ApiError as exc:
        raise fail(exc) from None
    console.print(f"{task['id']}: {task['status']}")


@app.command()
def close(
    study_id: str,
    after_idle: Annotated[
        float | None,
        typer.Option(
            "--after-idle",
            help="instead of closing it now, close the study once it has had no ask and no "
            "tell for this many seconds",
            min=0.001,
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Close an online study (no more asks), now or after an idle time."""
    try:
        with make_client(url, token) as client:
            if after_idle is None:
                study = client.close_study(study_id)
            else:
                study = client.set_idle_timeout(study_id, after_idle)
    except ApiError as exc:
        raise fail(exc) from None
    line = f"{study['id']}: {study['status']}"
    if study.get("reason"):
        line += f" ({study['reason']})"
    elif study.get("idle_timeout") is not None:
        line += f"; closes after {study['idle_timeout']:g} s without an ask or a tell"
    console.print(escape(line))


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
        with make_client(url, token) as client:
            return select(task_id, client.artifacts(task_id), **where)
    except ApiError as exc:
        raise fail(exc) from None


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
        raise fail(exc) from None
    console.print(f"{len(written)} file(s) in {(dest or Path.cwd() / task_id)}")


dataset_app = typer.Typer(no_args_is_help=True, help="Training datasets (trainingDS).")
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("upload")
def dataset_upload(
    name: str,
    files: Annotated[list[Path], typer.Argument(help="files, or directories of files")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload files as a dataset (repeat the command to resume an interrupted upload)."""
    from client.datasets import DatasetUploadError, upload

    try:
        with make_client(url, token) as client:
            done = upload(client, name, files, console)
    except (ApiError, DatasetUploadError) as exc:
        raise fail(exc) from None
    console.print(f"dataset [bold]{escape(name)}[/] ready: {len(done['files'])} file(s)")


@dataset_app.command("ls")
def dataset_ls(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List your datasets: status, files and size."""
    from client.datasets import table

    try:
        with make_client(url, token) as client:
            listed = client.call("GET", "/api/v1/datasets")
    except ApiError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(listed, indent=2))
        return
    console.print(table(listed))


@dataset_app.command("rm")
def dataset_rm(name: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Remove a dataset and its stored files."""
    try:
        with make_client(url, token) as client:
            client.call("DELETE", f"/api/v1/datasets/{name}")
    except ApiError as exc:
        raise fail(exc) from None
    console.print(f"dataset [bold]{escape(name)}[/] removed")


from client import export as _export  # noqa: E402 - after the app it registers with

app.command("points")(points)
app.command("jobs")(jobs)
app.command("export")(_export.export)
app.command("mlflow")(_export.mlflow)


def main() -> None:
    app()
