"""What every ``hpo`` command that talks to the server shares: the --url and --token
options, the client they make, and how an error ends the command."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from client.http import ApiClient
from client.settings import load_config
from client.submission import SubmissionInputError

UrlOpt = Annotated[str | None, typer.Option("--url", help="server URL (or HPO_URL)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="bearer token (or HPO_TOKEN)")]

console = Console()
err = Console(stderr=True)


def make_client(url: str | None, token: str | None) -> ApiClient:
    config = load_config(url, token)
    if not config.token:
        err.print("[red]no token[/]: pass --token, set HPO_TOKEN, or run `hpo login`")
        raise typer.Exit(2)
    return ApiClient(config.url, config.token)


def fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error[/] {exc}")
    return typer.Exit(2 if isinstance(exc, SubmissionInputError) else 1)
