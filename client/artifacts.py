"""``hpo artifacts ls`` and ``hpo download``: a task's stored files, listed and fetched.

The api lists a task's artifacts with a presigned download URL each (valid for an
hour, bound to the object), so downloads go straight to the artifact store and need no
token. Job ids are ``<point id>.a<attempt>`` and point ids ``<task>.<segment>.<index>``,
which is how an artifact is matched to ``--point`` and ``--segment``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table

KINDS = ("metrics", "log", "meta", "checkpoint")
_JOB = re.compile(r"^(?P<point>.+)\.a\d+(\.r\d+)?$")


class DownloadError(RuntimeError):
    """A file could not be fetched or written; the message says which and why."""


def point_id_of(job_id: str) -> str:
    found = _JOB.match(job_id)
    return found.group("point") if found else job_id


def segment_and_index(task_id: str, job_id: str) -> tuple[str, int | None]:
    rest = point_id_of(job_id).removeprefix(f"{task_id}.")
    segment, _, index = rest.rpartition(".")
    return segment, int(index) if index.isdigit() else None


def select(
    task_id: str,
    artifacts: Iterable[dict[str, Any]],
    *,
    point: int | None = None,
    segment: str | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    chosen = []
    for item in artifacts:
        seg, index = segment_and_index(task_id, item["job_id"])
        if point is not None and index != point:
            continue
        if segment is not None and seg != segment:
            continue
        if kind is not None and item["kind"] != kind:
            continue
        chosen.append({**item, "segment": seg, "index": index})
    return chosen


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def table(items: list[dict[str, Any]]) -> Table:
    out = Table("point", "segment", "job", "kind", "file", "size", "verified")
    for item in items:
        verified = {None: "checking", True: "yes", False: "MISMATCH"}[item["verified"]]
        out.add_row(
            str(item["index"]),
            item["segment"],
            item["job_id"],
            item["kind"],
            file_name(item),
            _size(int(item["size"])),
            verified,
        )
    return out


def file_name(item: dict[str, Any]) -> str:
    """The key below ``<owner>/<task>/``: metrics and metadata files are named after
    their point, logs are ``jobs/<job>/payload.log``, so no two files share a name."""
    parts = str(item["key"]).split("/")[2:]
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise DownloadError(f"refusing the artifact key {item['key']!r}")
    return "/".join(parts)


def download(items: list[dict[str, Any]], dest: Path, console: Console) -> list[Path]:
    """Fetch every item into ``dest`` with one progress bar over all bytes; a partial
    file is never left under its final name."""
    dest.mkdir(parents=True, exist_ok=True)
    total = sum(int(i["size"]) for i in items)
    written: list[Path] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=console) as bar, httpx.Client(timeout=60) as http:
        row = bar.add_task(f"{len(items)} file(s)", total=total)
        for item in items:
            target = dest / file_name(item)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            try:
                with http.stream("GET", item["url"]) as reply, partial.open("wb") as out:
                    if reply.is_error:
                        raise DownloadError(
                            f"{file_name(item)}: the store said {reply.status_code}"
                        )
                    for chunk in reply.iter_bytes():
                        out.write(chunk)
                        bar.advance(row, len(chunk))
            except (httpx.HTTPError, OSError) as exc:
                partial.unlink(missing_ok=True)
                raise DownloadError(f"{file_name(item)}: {exc}") from None
            except DownloadError:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(target)
            written.append(target)
    return written
