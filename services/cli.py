"""``hpo-services``: run central services, alone or together, and administer tokens."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from services.api import auth
from services.api.auth import issue_token
from services.assembly import SERVICE_NAMES, assemble, bind_listeners, run_assembly
from services.context import open_context
from services.outage import OneLineOutages
from shared.bus import open_bus
from shared.config import (
    ApiSettings,
    BrokerSettings,
    LogSettings,
    MonitorSettings,
    SteeringSettings,
    StorageSettings,
    load,
)
from shared.logs import setup_logging
from shared.startup import StartupError, describe
from shared.store import open_store

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
admin = typer.Typer(no_args_is_help=True, help="Token administration.")
app.add_typer(admin, name="admin")
console = Console(stderr=True)
T = TypeVar("T")


def _startup(step: Callable[[], T]) -> T:
    """Run a start-up step; a mistake in the settings or a port in use is one line on
    stderr naming what to fix, and exit status 2, never a traceback."""
    try:
        return step()
    except (ValidationError, StartupError) as exc:
        typer.echo(f"hpo-services: {describe(exc)}", err=True)
        raise typer.Exit(2) from None


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _run(
    names: list[str],
    api: ApiSettings,
    monitor: MonitorSettings,
    sockets: dict[str, socket.socket],
) -> None:
    ctx = await open_context(api)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    try:
        assembly = assemble(
            names,
            ctx,
            api=api,
            monitor=monitor,
            broker=load(BrokerSettings),
            storage=load(StorageSettings),
            steering=load(SteeringSettings),
            api_socket=sockets.get("api"),
            monitor_socket=sockets.get("monitor"),
            ops_socket=sockets.get("ops"),
        )
        await run_assembly(assembly, api.reconcile_interval, stop)
    finally:
        await ctx.close()


def _settings() -> tuple[ApiSettings, MonitorSettings]:
    """Every settings class, read once here so that any mistake shows before starting."""
    api = load(ApiSettings)
    for cls in (BrokerSettings, StorageSettings, SteeringSettings):
        load(cls)
    return api, load(MonitorSettings)


@app.command()
def run(
    name: Annotated[str, typer.Argument(help=f"one of {', '.join(SERVICE_NAMES)}, or 'all'")],
    embedded: Annotated[
        bool, typer.Option(help="everything in one process on the embedded default")
    ] = False,
) -> None:
    """Run one service (or all of them) until SIGINT/SIGTERM."""
    setup_logging(_startup(lambda: load(LogSettings))).addFilter(OneLineOutages())
    if embedded:
        from services.embedded import run_embedded_forever

        ops = _startup(lambda: load(ApiSettings, dev_mode=True))
        ops_port = 0 if ops.ops_port is None else ops.ops_port_for("all")
        _startup(lambda: asyncio.run(run_embedded_forever(ops_port)))
        return
    names = list(SERVICE_NAMES) if name == "all" else [name]
    if name != "all" and name not in SERVICE_NAMES:
        console.print(f"[red]unknown service {name!r}[/]; known: {', '.join(SERVICE_NAMES)}, all")
        raise typer.Exit(2)
    api, monitor = _startup(_settings)
    sockets = _startup(lambda: bind_listeners(names, api, monitor, api))
    _startup(lambda: asyncio.run(_run(names, api, monitor, sockets)))


async def _create_token(owner: str, scopes: list[str], days: float | None) -> str:
    settings = load(ApiSettings)
    store = open_store(settings.mongo_url)
    try:
        await store.start()
        ttl = None if days is None else timedelta(days=days)
        _token, secret = await issue_token(store, owner, scopes, ttl=ttl)
        return secret
    finally:
        await store.close()


@admin.command("create-token")
def create_token(
    owner: Annotated[str, typer.Option(help="user (or site operator) the token acts for")],
    scope: Annotated[
        list[str] | None, typer.Option(help="user, admin or edge:<site>; repeatable")
    ] = None,
    days: Annotated[float | None, typer.Option(help="expiry in days (default: never)")] = None,
) -> None:
    """Create a token and print its secret (shown only this once)."""
    _startup(lambda: load(ApiSettings))
    try:
        secret = asyncio.run(_create_token(owner, scope or ["user"], days))
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    typer.echo(secret)


async def _revoke(token_id: str) -> bool:
    settings = load(ApiSettings)
    store = open_store(settings.mongo_url)
    bus = open_bus(settings.bus_url, prefix=settings.bus_prefix)
    try:
        await store.start()
        try:
            async with asyncio.timeout(10):
                await bus.connect()
        except Exception as exc:
            console.print(f"[yellow]the bus is away ({exc or type(exc).__name__})[/]")
            if not await store.tokens.revoke(token_id):
                return False
            console.print(
                "[yellow]revoked; the api processes were not told and refuse the token "
                f"within {settings.token_cache_seconds:g} s[/]"
            )
            return True
        return await auth.revoke_token(store, bus, token_id)
    finally:
        await store.close()
        with contextlib.suppress(Exception):
            await bus.close()


@admin.command("revoke-token")
def revoke_token(token_id: str) -> None:
    """Revoke a token by its id (``tok_...``)."""
    if not asyncio.run(_revoke(token_id)):
        console.print(f"[red]no token {token_id}[/]")
        raise typer.Exit(1)


def main() -> None:
    app()
