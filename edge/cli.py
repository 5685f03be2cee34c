"""``hpo-edge``: the harvester daemon, the node agent and the version.

Typical use on a login node (or as the systemd user service in deploy/)::

    hpo-edge harvester --config ~/hpo-edge/site.toml

and, inside a batch job on a compute node (the batch adapters write this for you)::

    hpo-edge node run-job $HPO_EDGE_ROOT/jobs/<job_id>
    hpo-edge node run-worker $HPO_EDGE_ROOT/workers/<worker_id>   # layout per_gpu
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge.config import SiteConfig, SiteConfigError, load_site_config
from edge.version import edge_version

if TYPE_CHECKING:
    from edge.harvester.daemon import Harvester

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The edge of hpo-relay: the login-node harvester and the compute-node agent.",
)
node_app = typer.Typer(no_args_is_help=True, help="Commands run on compute nodes.")
app.add_typer(node_app, name="node")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"hpo-edge: {message}", err=True)
    return typer.Exit(code=2)


async def _serve(config_path: Path) -> None:
    from edge.batch.isolation import IsolationUnavailableError
    from edge.harvester.daemon import Harvester, HarvesterLockedError
    from edge.metrics import edge_ops_app
    from shared.web import ListenError, bind, serve

    config = _load(config_path)
    config.api_token()  # fail now, not at the first request, if the token is unreadable
    ops_socket = None
    if config.ops_port is not None:
        try:
            ops_socket = bind(config.ops_host, config.ops_port, setting="ops_port")
        except ListenError as exc:
            raise _fail(f"{config_path}: {exc}") from None
    try:
        harvester = Harvester(config)
    except IsolationUnavailableError as exc:
        raise _fail(str(exc)) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            if ops_socket is not None:
                logging.getLogger(__name__).info(
                    "operations listener on %s", ops_socket.getsockname()
                )
                app = edge_ops_app(config, harvester.metrics)
                group.create_task(serve(app, ops_socket, stop))
            group.create_task(_run_then_stop(harvester, stop))
    except* HarvesterLockedError as group_exc:
        raise _fail(str(group_exc.exceptions[0])) from None


async def _run_then_stop(harvester: Harvester, stop: asyncio.Event) -> None:
    try:
        await harvester.run(stop)
    finally:
        stop.set()  # the listener ends with the daemon


def _load(config_path: Path) -> SiteConfig:
    try:
        return load_site_config(config_path)
    except SiteConfigError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def harvester(
    config: Annotated[Path, typer.Option("--config", "-c", help="site.toml of this site")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the login-node daemon until SIGINT or SIGTERM."""
    from shared.config import LogSettings, load
    from shared.logs import setup_logging

    setup_logging(load(LogSettings, **({"level": "DEBUG"} if verbose else {})))
    try:
        asyncio.run(_serve(config))
    except SiteConfigError as exc:  # e.g. the token file became unreadable
        raise _fail(str(exc)) from exc


@app.command()
def doctor(
    config: Annotated[Path, typer.Option("--config", "-c", help="site.toml of this site")],
    heartbeat: Annotated[
        bool,
        typer.Option(
            help="Also check that the token is for this site by sending a real heartbeat "
            "with 0 free slots (the site then shows as alive, with no room, until the "
            "harvester's next heartbeat)."
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for each command and request.")
    ] = 10.0,
) -> None:
    """Check a site config on this host; exit 1 if any check fails."""
    from rich.console import Console

    from edge.doctor import render, run_checks

    results = run_checks(config, heartbeat=heartbeat, timeout=timeout)
    render(results, Console(highlight=False, soft_wrap=True))
    raise typer.Exit(code=1 if any(r.status == "FAIL" for r in results) else 0)


@node_app.command("run-job")
def run_job(job_dir: Annotated[Path, typer.Argument(help="jobs/<job_id> directory")]) -> None:
    """Run the payload of one staged job (what a batch job executes)."""
    from edge.node.agent import main as agent_main

    raise typer.Exit(code=agent_main(str(job_dir)))


@node_app.command("run-worker")
def run_worker(
    worker_dir: Annotated[Path, typer.Argument(help="workers/<worker_id> directory")],
) -> None:
    """Run a late-binding worker: one payload per GPU, jobs from its inbox."""
    from edge.node.worker import main as worker_main

    raise typer.Exit(code=worker_main(str(worker_dir)))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(edge_version())


def main() -> None:
    app(prog_name="hpo-edge")


if __name__ == "__main__":
    main()
