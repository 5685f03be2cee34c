"""``hpo submit``: phpo's whole option set (:mod:`shared.domain.phpo`).

Each option keeps phpo's spelling and its ``--loadJson`` key. Task options go into the
task config; client options are acted on here (``--dumpJson``, ``--noSubmit``,
``--verbose``, ``--version``, ``--helpGroup``), also when they come from the
``--loadJson`` file, as phpo does; PanDA-only options are accepted and sent along, and
the server answers with one warning line each, which is printed.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from client.http import ApiClient, ApiError
from client.settings import load_config
from client.submission import SubmissionInputError, build_submission, load_json_config
from client.watch import watch as watch_task
from shared.domain.phpo import BY_DEST, CLIENT_KEYS, HELP_GROUP_HELP, group_help

console = Console()
err = Console(stderr=True)
EXTRA_PANEL = "hpo-relay"


def client_version() -> str:
    try:
        return version("hpo-relay")
    except PackageNotFoundError:  # a checkout that was not installed
        return "unknown"


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"hpo-relay {client_version()}")
        raise typer.Exit(0)


def _print_group(value: str | None) -> None:
    if value is None:
        return
    try:
        typer.echo(group_help(value), nl=False)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--helpGroup") from None
    raise typer.Exit(0)


def phpo(dest: str, **extra: Any) -> Any:
    """The typer option of phpo's ``dest``, with its help and group."""
    option = BY_DEST[dest]
    return typer.Option(
        *option.flags, help=option.help, rich_help_panel=option.group, show_default=False, **extra
    )


def _given(params: dict[str, Any]) -> dict[str, Any]:
    """The phpo options given on the command line (flags left off are not given)."""
    return {k: v for k, v in params.items() if k in BY_DEST and v is not None and v is not False}


def _dump(path: Path, options: dict[str, Any], code: int, out: str, task_id: str | None) -> None:
    result = {**options, "returnCode": code, "returnOut": out, "jediTaskID": task_id}
    try:
        path.expanduser().write_text(json.dumps(result, indent=2, default=str) + "\n")
    except OSError as exc:
        err.print(f"[red]error[/] --dumpJson: cannot write {path}: {exc}")


def _warn(lines: list[str]) -> None:
    for line in lines:
        err.print(f"[yellow]warning[/] {escape(line)}")


def _dry_run(body: dict[str, Any]) -> list[str]:
    """Check the config as the server would; its warnings. Raises SubmissionInputError."""
    from shared.domain.taskconfig import TaskConfig

    try:
        config = TaskConfig.model_validate(body["config"])
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()]
        raise SubmissionInputError("the config is not valid:\n" + "\n".join(lines)) from None
    return config.warnings


def submit(
    ctx: typer.Context,
    version: Annotated[bool, phpo("version", is_eager=True, callback=print_version)] = False,
    loadJson: Annotated[Path | None, phpo("loadJson")] = None,
    dumpJson: Annotated[Path | None, phpo("dumpJson")] = None,
    nParallelEvaluation: Annotated[int | None, phpo("nParallelEvaluation")] = None,
    maxPoints: Annotated[int | None, phpo("maxPoints")] = None,
    maxEvaluationJobs: Annotated[int | None, phpo("maxEvaluationJobs")] = None,
    maxPointsPerEvaluationJob: Annotated[int | None, phpo("maxPointsPerEvaluationJob")] = None,
    nPointsPerIteration: Annotated[int | None, phpo("nPointsPerIteration")] = None,
    minUnevaluatedPoints: Annotated[int | None, phpo("minUnevaluatedPoints")] = None,
    steeringContainer: Annotated[str | None, phpo("steeringContainer")] = None,
    steeringExec: Annotated[str | None, phpo("steeringExec")] = None,
    searchSpaceFile: Annotated[str | None, phpo("searchSpaceFile")] = None,
    evaluationContainer: Annotated[str | None, phpo("evaluationContainer")] = None,
    evaluationExec: Annotated[str | None, phpo("evaluationExec")] = None,
    evaluationInput: Annotated[str | None, phpo("evaluationInput")] = None,
    evaluationTrainingData: Annotated[str | None, phpo("evaluationTrainingData")] = None,
    evaluationOutput: Annotated[str | None, phpo("evaluationOutput")] = None,
    evaluationMeta: Annotated[str | None, phpo("evaluationMeta")] = None,
    evaluationMetrics: Annotated[str | None, phpo("evaluationMetrics")] = None,
    checkPointToSave: Annotated[str | None, phpo("checkPointToSave")] = None,
    checkPointToLoad: Annotated[str | None, phpo("checkPointToLoad")] = None,
    checkPointInterval: Annotated[int | None, phpo("checkPointInterval")] = None,
    alrbArgs: Annotated[str | None, phpo("alrbArgs")] = None,
    architecture: Annotated[str | None, phpo("architecture")] = None,
    segmentSpecFile: Annotated[str | None, phpo("segmentSpecFile")] = None,
    verbose: Annotated[bool, phpo("verbose")] = False,
    trainingDS: Annotated[str | None, phpo("trainingDS")] = None,
    outDS: Annotated[str | None, phpo("outDS")] = None,
    official: Annotated[bool, phpo("official")] = False,
    site: Annotated[str | None, phpo("site")] = None,
    workingGroup: Annotated[str | None, phpo("workingGroup")] = None,
    noSubmit: Annotated[bool, phpo("noSubmit")] = False,
    python3: Annotated[bool, phpo("python3")] = False,
    vomsRoles: Annotated[str | None, phpo("vomsRoles")] = None,
    noEmail: Annotated[bool, phpo("noEmail")] = False,
    intrSrv: Annotated[bool, phpo("intrSrv")] = False,
    helpGroup: Annotated[
        str | None,
        typer.Option("--helpGroup", help=HELP_GROUP_HELP, is_eager=True, callback=_print_group),
    ] = None,
    name: Annotated[
        str,
        typer.Option(
            "--name", help="a name for the task (default: --outDS)", rich_help_panel=EXTRA_PANEL
        ),
    ] = "",
    follow: Annotated[
        bool,
        typer.Option("--watch", help="follow the task until it ends", rich_help_panel=EXTRA_PANEL),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option("--url", help="server URL (or HPO_URL)", rich_help_panel=EXTRA_PANEL),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help="bearer token (or HPO_TOKEN)", rich_help_panel=EXTRA_PANEL),
    ] = None,
) -> None:
    """Submit a task; files of the current directory travel with it, as with phpo."""
    given = _given(ctx.params)
    try:
        loaded = load_json_config(loadJson) if loadJson else {}
    except SubmissionInputError as exc:
        err.print(f"[red]error[/] {exc}")
        raise typer.Exit(2) from None
    options = {**loaded, **given}
    if options.get("version"):
        print_version(True)
    config = {k: v for k, v in options.items() if k not in CLIENT_KEYS}
    talk = bool(options.get("verbose"))
    dump = options.get("dumpJson")
    dump_path = Path(str(dump)) if dump else None
    try:
        body = build_submission(config, {}, Path.cwd(), name=name)
    except SubmissionInputError as exc:
        err.print(f"[red]error[/] {exc}")
        raise typer.Exit(2) from None
    if talk:
        err.print(f"files travelling with the task: {', '.join(sorted(body['files'])) or 'none'}")
        err.print(escape(f"config: {json.dumps(body['config'], sort_keys=True)}"))
    if options.get("noSubmit"):
        try:
            _warn(_dry_run(body))
        except SubmissionInputError as exc:
            err.print(f"[red]error[/] {exc}")
            if dump_path:
                _dump(dump_path, options, 2, str(exc), None)
            raise typer.Exit(2) from None
        console.print("dry run (--noSubmit): the config is valid; nothing was submitted")
        typer.echo(json.dumps({**body, "files": sorted(body["files"])}, indent=2))
        if dump_path:
            _dump(dump_path, options, 0, "not submitted (--noSubmit)", None)
        return
    try:
        settings = load_config(url, token)
        if not settings.token:
            raise ApiError(0, "no token: pass --token, set HPO_TOKEN, or run `hpo login`")
        with ApiClient(settings.url, settings.token) as client:
            if talk:
                err.print(f"POST {settings.url.rstrip('/')}/api/v1/tasks")
            task = client.submit(body)
            _warn(task.get("warnings", []))
            if talk:
                err.print(escape(f"reply: {json.dumps(task, sort_keys=True)}"))
            console.print(f"submitted [bold]{task['id']}[/]")
            if dump_path:
                _dump(dump_path, options, 0, f"submitted {task['id']}", task["id"])
            if follow:
                final = watch_task(client, task["id"], console)
                raise typer.Exit(0 if final["status"] == "done" else 1)
    except ApiError as exc:
        err.print(f"[red]error[/] {exc}")
        if dump_path:
            _dump(dump_path, options, 1, str(exc), None)
        raise typer.Exit(1) from None
