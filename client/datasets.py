"""``hpo dataset upload|ls|rm``: training datasets in the artifact store.

``upload NAME FILES...`` hashes each file (or every file under a directory, by its
path relative to that directory), declares them to the api, then PUTs each missing part
to its presigned URL with one progress bar over all bytes, and asks the api to check
and complete the dataset. An interrupted upload is resumed by repeating the command: the
api only hands out the parts the store does not hold yet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from client.artifacts import _size
from client.http import ApiClient

HASH_CHUNK = 4 * 1024 * 1024


class DatasetUploadError(RuntimeError):
    """A file could not be read or a part could not be stored; the message says which."""


def collect(paths: Iterable[Path]) -> dict[str, Path]:
    """Dataset file name -> local path: a file by its own name, a directory's files by
    their path below it (hidden files and directories are left out)."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            for item in sorted(path.rglob("*")):
                rel = item.relative_to(path)
                if item.is_file() and not any(p.startswith(".") for p in rel.parts):
                    found[rel.as_posix()] = item
        elif path.is_file():
            found[path.name] = path
        else:
            raise DatasetUploadError(f"{path}: no such file or directory")
    if not found:
        raise DatasetUploadError("no file to upload")
    return found


def describe(name: str, path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise DatasetUploadError(f"{path}: {exc.strerror}") from None
    return {"name": name, "size": size, "sha256": digest.hexdigest()}


def _read_part(path: Path, part: int, part_size: int, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek((part - 1) * part_size)
        data = handle.read(size)
    if len(data) != size:
        raise DatasetUploadError(f"{path} changed while it was uploaded")
    return data


def upload(client: ApiClient, name: str, paths: Iterable[Path], console: Console) -> dict[str, Any]:
    """Upload ``paths`` as dataset ``name`` (resuming an interrupted upload); returns the
    api's view of the ready dataset."""
    local = collect(paths)
    files = [describe(n, p) for n, p in local.items()]
    plan = client.call("PUT", f"/api/v1/datasets/{name}", json={"files": files})
    part_size = int(plan["dataset"]["part_size"])
    uploads = plan["uploads"]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=console) as bar, httpx.Client(timeout=300) as http:
        row = bar.add_task(f"{name}: {len(uploads)} part(s)", total=sum(u["size"] for u in uploads))
        for item in uploads:
            data = _read_part(local[item["file"]], item["part"], part_size, item["size"])
            try:
                reply = http.put(item["url"], content=data)
            except httpx.HTTPError as exc:
                raise DatasetUploadError(
                    f"{item['file']} part {item['part']}: {exc}; repeat the upload to resume"
                ) from None
            if reply.is_error:
                raise DatasetUploadError(
                    f"{item['file']} part {item['part']}: the store said {reply.status_code}; "
                    "repeat the upload to resume"
                )
            bar.advance(row, len(data))
    done: dict[str, Any] = client.call("POST", f"/api/v1/datasets/{name}/complete")
    return done


def table(datasets: list[dict[str, Any]]) -> Table:
    out = Table("dataset", "status", "files", "size")
    for item in datasets:
        out.add_row(item["name"], item["status"], str(len(item["files"])), _size(item["size"]))
    return out
