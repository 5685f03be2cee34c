"""Periodic snapshots of the payload's checkpoint files (the task's checkPointToSave).

Every interval, and once more when the batch system stops the job, the node agent asks
:class:`Snapshotter` for a snapshot. One is taken only if a listed file or directory
changed since the last one (names, kinds, sizes, mtimes and link targets are
compared; contents are not read for that). It is a gzip tarball with paths relative to
the work directory, written under a hidden name and renamed into place; the newest
``keep`` are kept. A snapshot growing over ``max_bytes`` is abandoned while it is
written and refused with a message; the previous snapshots stay.

Entries are archived as they are, symlinks as links: what a restore may extract is
decided at the restore, which refuses links leaving the work directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.snapshots import list_snapshots, snapshot_name

log = logging.getLogger(__name__)

Entry = tuple[str, str, int, int, str]
"""(relative path, kind, size, mtime in ns, link target) of one archived entry."""


class TooLargeError(Exception):
    pass


class _CappedWriter:
    """A binary file that refuses to grow past ``limit`` bytes."""

    def __init__(self, handle: Any, limit: int) -> None:
        self._handle = handle
        self._limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self._limit:
            raise TooLargeError
        written: int = self._handle.write(data)
        return written

    def flush(self) -> None:
        self._handle.flush()


@dataclass(frozen=True)
class SnapshotResult:
    outcome: Literal["taken", "unchanged", "nothing", "refused", "error"]
    detail: str = ""
    path: Path | None = None


def _entry(work: Path, path: Path) -> Entry | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    rel = path.relative_to(work).as_posix()
    if path.is_symlink():
        return (rel, "link", 0, st.st_mtime_ns, os.readlink(path))
    if path.is_dir():
        return (rel, "dir", 0, 0, "")
    return (rel, "file", st.st_size, st.st_mtime_ns, "")


def scan(work: Path, names: list[str]) -> list[Entry]:
    """Every entry under ``names`` (relative to ``work``) that exists, sorted, without
    following symlinks."""
    entries: list[Entry] = []
    for name in names:
        top = work / name
        first = _entry(work, top)
        if first is None:
            continue
        entries.append(first)
        if first[1] != "dir":
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for child in sorted(dirnames) + sorted(filenames):
                found = _entry(work, Path(dirpath) / child)
                if found is not None:
                    entries.append(found)
    return sorted(set(entries))


class Snapshotter:
    """Takes the snapshots of one job; not thread-safe (the agent calls it from its
    supervision loop)."""

    def __init__(
        self,
        work: Path,
        directory: Path,
        names: list[str],
        *,
        interval_seconds: float,
        max_bytes: int,
        keep: int,
        restored: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.work = work
        self.directory = directory
        self.names = names
        self.interval = interval_seconds
        self.max_bytes = max_bytes
        self.keep = keep
        self._clock = clock
        self._next_due = clock() + interval_seconds
        existing = list_snapshots(directory)
        self._seq = existing[-1].seq if existing else 0
        # A restored checkpoint is the last snapshot: unchanged, it is not taken again.
        self._last: list[Entry] | None = scan(work, names) if restored else None

    @property
    def has_snapshot(self) -> bool:
        return bool(list_snapshots(self.directory))

    def tick(self) -> SnapshotResult | None:
        """Snapshot if the interval has passed; None when it has not."""
        now = self._clock()
        if now < self._next_due:
            return None
        self._next_due = now + self.interval
        return self.snapshot()

    def snapshot(self) -> SnapshotResult:
        """Snapshot now if anything changed since the last one."""
        try:
            entries = scan(self.work, self.names)
        except OSError as exc:
            return SnapshotResult("error", f"cannot list the checkpoint files: {exc}")
        if not entries:
            return SnapshotResult("nothing")
        if entries == self._last:
            return SnapshotResult("unchanged")
        self.directory.mkdir(exist_ok=True)
        seq = self._seq + 1
        tmp = self.directory / f".{snapshot_name(seq)}.{secrets.token_hex(4)}.tmp"
        try:
            self._write(tmp, entries)
        except TooLargeError:
            self._discard(tmp)
            self._last = entries  # unchanged files would be refused again
            detail = (
                f"checkpoint not saved: the snapshot of {', '.join(self.names)} is over "
                f"{self.max_bytes} bytes compressed; the previous one is kept"
            )
            return SnapshotResult("refused", detail)
        except (OSError, tarfile.TarError) as exc:
            self._discard(tmp)  # typically a file rewritten while archived: next time
            return SnapshotResult("error", f"checkpoint not saved this time: {exc}")
        final = self.directory / snapshot_name(seq)
        os.replace(tmp, final)
        self._seq, self._last = seq, entries
        self._prune()
        return SnapshotResult("taken", path=final)

    def _write(self, tmp: Path, entries: list[Entry]) -> None:
        with open(tmp, "wb") as handle:
            capped = _CappedWriter(handle, self.max_bytes)
            with tarfile.open(fileobj=capped, mode="w:gz", compresslevel=6) as tar:  # type: ignore[call-overload]
                for rel, _kind, *_ in entries:
                    tar.add(self.work / rel, arcname=rel, recursive=False)
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _discard(tmp: Path) -> None:
        with contextlib.suppress(OSError):
            tmp.unlink()

    def _prune(self) -> None:
        for old in list_snapshots(self.directory)[: -self.keep]:
            with contextlib.suppress(OSError):
                old.path.unlink()
