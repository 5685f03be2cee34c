"""``hpo points`` and ``hpo jobs``: a task's points and jobs, fetched a page at a time,
so a task of 100,000 points starts printing at once and ``--limit`` reads no more."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape

from client.http import ApiError
from client.session import TokenOpt, UrlOpt, console, fail, make_client

LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="print at most this many (default: all)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON object per line")]
DescOpt = Annotated[bool, typer.Option("--desc", help="reverse the order")]
PAGE = 500
"""Records per request; a page is fetched only when the previous one is printed."""


def _loss(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.5g}" for v in value) + "]"
    return f"{value:.5g}"


def _print(rows: Iterator[dict[str, Any]], limit: int | None, as_json: bool, line: Any) -> None:
    for row in itertools.islice(rows, limit):
        if as_json:
            typer.echo(json.dumps(row, separators=(",", ":")))
        else:
            console.print(escape(line(row)), soft_wrap=True)


def points(
    task_id: str,
    order: Annotated[
        str, typer.Option("--order", help="index (generation order) or loss (best first)")
    ] = "index",
    status: Annotated[
        str | None, typer.Option("--status", help="unevaluated, pending, evaluated, failed")
    ] = None,
    segment: Annotated[str | None, typer.Option("--segment", help="one segment only")] = None,
    desc: DescOpt = False,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List a task's points: index, status, loss, attempts and parameters."""
    filters: dict[str, str | int | bool] = {"order": order, "descending": desc}
    filters["limit"] = min(PAGE, limit or PAGE)
    if status:
        filters["status"] = status
    if segment:
        filters["segment"] = segment

    def line(p: dict[str, Any]) -> str:
        params = " ".join(f"{k}={v}" for k, v in p["params"].items())
        loss = _loss(p["loss"])
        where = f"{p['segment']}/{p['index']}"
        return f"{where:<12} {p['status']:<11} {loss:<12} {p['attempts']}  {params}"

    try:
        with make_client(url, token) as client:
            _print(client.points(task_id, **filters), limit, as_json, line)
    except ApiError as exc:
        raise fail(exc) from None


def jobs(
    task_id: str,
    status: Annotated[str | None, typer.Option("--status", help="e.g. running, failed")] = None,
    site: Annotated[str | None, typer.Option("--site", help="one site only")] = None,
    desc: DescOpt = False,
    limit: LimitOpt = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List a task's jobs, oldest first: id, status, site, attempt and reason."""
    filters: dict[str, str | int | bool] = {"descending": desc, "limit": min(PAGE, limit or PAGE)}
    if status:
        filters["status"] = status
    if site:
        filters["site"] = site

    def line(j: dict[str, Any]) -> str:
        return (
            f"{j['id']}  {j['status']:<10} {j['site'] or '-':<12} attempt {j['attempt']}"
            f"  {j['reason']}".rstrip()
        )

    try:
        with make_client(url, token) as client:
            _print(client.jobs(task_id, **filters), limit, as_json, line)
    except ApiError as exc:
        raise fail(exc) from None
