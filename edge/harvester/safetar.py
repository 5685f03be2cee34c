"""Extracting a checkpoint tarball without letting it write outside its directory.

A checkpoint comes back from the object store, so it is treated as hostile: before
anything is written, every member is checked, and one bad member refuses the whole
archive (a half-restored checkpoint is worse than none). Refused: absolute paths,
``..`` components, symbolic or hard links whose target leaves the directory, device
files, FIFOs and anything else that is not a file, directory or link, and archives
expanding to more than ``max_bytes``. Python's own ``data`` extraction filter then
runs as a second line (it also drops set-uid bits and resolves existing links).
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from pathlib import Path

MAX_EXTRACTED_BYTES = 20 * 1024**3


class UnsafeArchiveError(ValueError):
    """The archive is refused; the message names the member and why."""


def _inside(dest: str, path: str) -> bool:
    normal = posixpath.normpath(path)
    return normal == dest or normal.startswith(dest + "/")


def _check(member: tarfile.TarInfo, dest: str) -> None:
    name = member.name
    what = f"checkpoint member {name!r}"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{what}: absolute paths are refused")
    if "\\" in name or ".." in name.split("/"):
        raise UnsafeArchiveError(f"{what}: '..' and backslashes are refused")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchiveError(f"{what}: device files, FIFOs and other special files are refused")
    target = posixpath.join(dest, name)
    if member.issym():
        link = member.linkname
        if link.startswith("/") or not _inside(
            dest, posixpath.join(posixpath.dirname(target), link)
        ):
            raise UnsafeArchiveError(f"{what}: the link to {link!r} leaves the directory")
    if member.islnk():
        link = member.linkname
        if link.startswith("/") or not _inside(dest, posixpath.join(dest, link)):
            raise UnsafeArchiveError(f"{what}: the hard link to {link!r} leaves the directory")


def safe_extract(
    archive: tarfile.TarFile, dest: Path, *, max_bytes: int = MAX_EXTRACTED_BYTES
) -> None:
    """Extract every member of ``archive`` into ``dest`` (which must exist), or
    nothing; raises UnsafeArchiveError."""
    root = os.path.realpath(dest)
    members = archive.getmembers()
    total = 0
    for member in members:
        _check(member, root)
        total += max(0, member.size) if member.isfile() else 0
        if total > max_bytes:
            raise UnsafeArchiveError(f"the checkpoint expands to more than {max_bytes} bytes")
    try:
        archive.extractall(root, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"checkpoint refused: {exc}") from exc
