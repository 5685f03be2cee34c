"""The shared-filesystem protocol between the harvester and the node agents
(docs/architecture.md §6.7).

Compute nodes and the login node only share a parallel filesystem (NFS, GPFS, Lustre),
so every exchange is a file, and three rules hold everywhere:

* writes are atomic: a temporary name in the same directory, fsync, ``os.replace``,
  so a reader sees the old file or the new one, never half of one;
* reads are tolerant: a missing or (from a non-conforming writer) half-written file
  reads as None and the reader tries again on its next poll;
* liveness is judged by mtimes compared with a probe touched in the same directory,
  never with the local clock, because node clocks drift; and nobody uses inotify,
  which does not see writes made by another node.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOBS_DIR = "jobs"
PROBE_NAME = ".probe"


@dataclass(frozen=True)
class JobPaths:
    """Where the files of one job live under the edge root."""

    dir: Path

    @classmethod
    def under(cls, root: Path, job_id: str) -> JobPaths:
        return cls(root / JOBS_DIR / job_id)

    @property
    def job_id(self) -> str:
        return self.dir.name

    @property
    def job_json(self) -> Path:
        return self.dir / "job.json"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def status(self) -> Path:
        return self.dir / "status.json"

    @property
    def heartbeat(self) -> Path:
        return self.dir / "heartbeat"

    @property
    def kill(self) -> Path:
        return self.dir / "kill"

    @property
    def payload_log(self) -> Path:
        return self.dir / "payload.log"

    @property
    def agent_log(self) -> Path:
        return self.dir / "agent.log"

    @property
    def checkpoints(self) -> Path:
        """Snapshots of the payload's checkpoint files, written by the node agent."""
        return self.dir / "checkpoints"

    @property
    def harvester(self) -> Path:
        """The harvester's own bookkeeping (batch id, what it already reported)."""
        return self.dir / "harvester.json"

    @property
    def reported(self) -> Path:
        return self.dir / "reported.json"

    def point_dir(self, index: int) -> Path:
        """Where the agent keeps what the payload produced for the index-th point."""
        return self.dir / "points" / str(index)


class UnsafeNameError(ValueError):
    """A file or job name that could leave its directory."""


def check_file_name(name: str) -> str:
    """``name`` if it is a plain file name: no separator, no ``..``, no NUL, not ``.``."""
    if not name or name == "." or ".." in name or "/" in name or "\\" in name or "\0" in name:
        raise UnsafeNameError(f"unsafe file name {name!r}: must be a plain name in the directory")
    return name


def jobs_root(root: Path) -> Path:
    return root / JOBS_DIR


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable; some filesystems refuse to open a directory: not fatal.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: Path, value: Any, *, indent: int | None = 1) -> None:
    """``indent=None`` writes one line, as payloads' own tools usually do."""
    write_text_atomic(path, json.dumps(value, indent=indent) + "\n")


MAX_PROTOCOL_FILE = 16 * 1024 * 1024
"""Largest protocol file read; anything bigger was not written by this protocol."""


def read_text(path: Path) -> str | None:
    """The file's text, or None if it does not exist (yet), is not text, or is not a
    regular file of at most MAX_PROTOCOL_FILE bytes: a link, a FIFO (never blocked
    on) or a directory put in its place reads as missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PROTOCOL_FILE:
            return None
        return os.pread(fd, MAX_PROTOCOL_FILE, 0).decode()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def read_json(path: Path) -> Any | None:
    """The parsed file, or None if it is missing or not (yet) complete JSON."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def touch(path: Path) -> None:
    """Create ``path`` or set its mtime to now, as the file server's clock sees it."""
    with open(path, "a"):
        pass
    os.utime(path, None)


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except (FileNotFoundError, NotADirectoryError):
        return None


def file_age(path: Path, probe_dir: Path | None = None) -> float | None:
    """Seconds since ``path`` was last modified, or None if it does not exist.

    The reference "now" is the mtime of a probe file freshly touched in the same
    directory, so both timestamps come from the same clock (the file server's, or the
    writer's on filesystems that take the client's): skew between the node that wrote
    ``path`` and this host does not turn into a false "lost" or a missed one.
    """
    written = mtime(path)
    if written is None:
        return None
    probe = (probe_dir or path.parent) / PROBE_NAME
    touch(probe)
    now = mtime(probe)
    if now is None:  # removed under us: the directory is going away
        return None
    return max(0.0, now - written)


def heartbeat_age(paths: JobPaths) -> float | None:
    """Seconds since the node agent last touched its heartbeat; None before it started."""
    return file_age(paths.heartbeat)


def tail_text(
    path: Path, max_lines: int = 20, max_chars: int = 2000, start: int = 0, end: int | None = None
) -> str:
    """The last lines of a (log) file between byte offsets, bounded; "" if missing."""
    try:
        # A payload may have replaced the log: never follow a link, never block on a FIFO.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        size = os.lseek(fd, 0, os.SEEK_END)
        stop = size if end is None else min(end, size)
        begin = max(start, stop - max_chars * 4)
        data = os.pread(fd, max(0, stop - begin), begin)
    finally:
        os.close(fd)
    lines = data.decode(errors="replace").splitlines()[-max_lines:]
    return "\n".join(lines)[-max_chars:]
