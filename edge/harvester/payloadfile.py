"""Reading what a payload wrote, so that no file it can make stalls or crashes a site.

Everything under a job directory may have been written (or replaced) by the payload:
``points/<i>/output.json``, the meta and metrics files, ``intermediate.jsonl``, the
checkpoint snapshots, even ``status.json`` on a runtime that isolates nothing. So the
harvester reads them only through this module:

* the path is walked from the job directory one component at a time with ``openat``
  and ``O_NOFOLLOW``: a symbolic link anywhere below the job directory (the leaf or a
  parent) is refused, so nothing outside the job directory is ever read;
* the leaf is opened ``O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`` and ``fstat``-ed
  before any read: only a regular file is read, so a FIFO, socket, device or
  directory never blocks nor is read;
* at most ``max_bytes`` are read (the size on disk is checked first, the read itself is
  capped too, for a file still growing);
* text must be strict UTF-8, JSON must nest at most ``max_depth`` levels and hold only
  finite numbers (no ``NaN``, ``Infinity``, nor ``1e400`` or ``10**400``);
* the reads run on a small pool of threads of their own, under a time limit, so a
  hung filesystem delays only the job whose file hangs, never the scan.

Every refusal is a :class:`PayloadFileError` whose message is the reason the job fails
with, naming the file and what is wrong with it. A missing file is not an error: it
reads as None, as before it was written.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

LEAF_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_MISSING = (errno.ENOENT, errno.ENOTDIR)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


class PayloadFileLimits(BaseModel):
    """``[payload_files]`` of the site config: what the harvester accepts from a payload."""

    model_config = ConfigDict(extra="forbid")

    max_json_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    """Largest ``output.json``, ``status.json`` or meta file read."""
    max_artifact_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    """Largest metrics file or checkpoint snapshot uploaded (read whole into memory)."""
    max_json_depth: int = Field(default=64, ge=2, le=1000)
    """Deepest nesting of arrays and objects in a JSON document."""
    read_timeout: float = Field(default=10.0, gt=0)
    """Seconds one job's reads may take in a scan before the job fails."""
    reader_threads: int = Field(default=4, ge=1, le=64)
    """Threads doing those reads, shared by all jobs of the site."""


class PayloadFileError(Exception):
    """A file the payload wrote that the harvester refuses; ``str()`` is the reason."""


class PayloadJsonSyntaxError(PayloadFileError):
    """Not JSON at all (which a file still being written by a non-atomic writer is too)."""


class PayloadReadTimeoutError(Exception):
    """Reading a job's files took longer than ``read_timeout``: the filesystem, not
    necessarily the payload, is at fault, so the job is read again on the next scan."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _open_confined(base: Path, relative: str, name: str) -> int | None:
    """A descriptor of ``base/relative`` opened without following any link below
    ``base``; None if it does not exist."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("", ".", "..") or p.startswith("/") for p in parts):
        raise PayloadFileError(f"{relative}: not a path inside the job directory")
    try:
        current = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _MISSING:
            return None
        raise PayloadFileError(f"{relative}: the job directory cannot be opened ({exc})") from exc
    try:
        for depth, part in enumerate(parts):
            leaf = depth == len(parts) - 1
            try:
                fd = os.open(part, LEAF_FLAGS if leaf else DIR_FLAGS, dir_fd=current)
            except OSError as exc:
                if exc.errno in _MISSING:
                    if not leaf and _is_link(part, current):
                        raise _link_error(name, relative, parts[: depth + 1]) from exc
                    return None
                if exc.errno == errno.ELOOP or (not leaf and _is_link(part, current)):
                    raise _link_error(name, relative, parts[: depth + 1]) from exc
                raise PayloadFileError(f"{name} cannot be opened ({exc.strerror})") from exc
            os.close(current)
            current = fd
        fd, current = current, -1
        return fd
    finally:
        if current >= 0:
            os.close(current)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _link_error(name: str, relative: str, parts: tuple[str, ...]) -> PayloadFileError:
    where = "/".join(parts)
    what = name if where == relative else f"{name} (through {where})"
    return PayloadFileError(
        f"{what} is a symbolic link; the harvester reads only regular files inside the "
        "job directory"
    )


def read_bytes(base: Path, relative: str, max_bytes: int, name: str = "") -> bytes | None:
    """The bytes of a regular file ``base/relative`` of at most ``max_bytes``; None if
    it does not exist. Raises PayloadFileError for anything else, naming the file
    ``name`` (default: ``relative``)."""
    name = name or relative
    fd = _open_confined(base, relative, name)
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PayloadFileError(f"{name} is {_kind(info.st_mode)}; it must be a regular file")
        if info.st_size > max_bytes:
            raise PayloadFileError(
                f"{name} is {info.st_size} bytes, over the site's limit of {max_bytes}"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise PayloadFileError(
                f"{name} grew over the site's limit of {max_bytes} bytes while read"
            )
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(base: Path, relative: str, max_bytes: int, name: str = "") -> str | None:
    """:func:`read_bytes` decoded as strict UTF-8."""
    data = read_bytes(base, relative, max_bytes, name)
    return None if data is None else decode(name or relative, data)


def decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadFileError(
            f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from exc


def _depth(data: bytes) -> int:
    """How deep arrays and objects nest, strings aside (linear time, no recursion)."""
    brackets = _STRINGS.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    steps = (1 if c in b"[{" else -1 for c in brackets)
    return max(accumulate(steps))


def _constant(name: str) -> Callable[[str], Any]:
    def refuse(token: str) -> Any:
        raise PayloadFileError(f"{name} holds {token}; numbers must be finite")

    return refuse


def _float(name: str) -> Callable[[str], float]:
    def parse(token: str) -> float:
        value = float(token)
        if value in (float("inf"), float("-inf")):
            raise PayloadFileError(f"{name} holds the number {token[:40]}, out of range")
        return value

    return parse


def _int(name: str) -> Callable[[str], int]:
    def parse(token: str) -> int:
        if len(token.lstrip("-")) > 308:
            raise PayloadFileError(
                f"{name} holds an integer of {len(token.lstrip('-'))} digits, out of range"
            )
        value = int(token)
        if abs(value) > sys.float_info.max:
            raise PayloadFileError(f"{name} holds the integer {token[:40]}..., out of range")
        return value

    return parse


def parse_json(name: str, text: str, max_depth: int) -> Any:
    """``text`` parsed as JSON, bounded: raises PayloadFileError saying why not."""
    depth = _depth(text.encode())
    if depth > max_depth:
        raise PayloadFileError(
            f"{name} nests arrays or objects {depth} levels deep; the limit is {max_depth}"
        )
    try:
        return json.loads(
            text,
            parse_constant=_constant(name),
            parse_float=_float(name),
            parse_int=_int(name),
        )
    except PayloadFileError:
        raise
    except RecursionError as exc:  # the depth check makes this unreachable; kept safe
        raise PayloadFileError(f"{name} nests too deeply") from exc
    except ValueError as exc:
        raise PayloadJsonSyntaxError(f"{name} is not valid JSON ({exc})") from exc


def read_json(base: Path, relative: str, limits: PayloadFileLimits, name: str = "") -> Any | None:
    """The parsed JSON file ``base/relative`` (None if missing), every bound checked."""
    text = read_text(base, relative, limits.max_json_bytes, name)
    return None if text is None else parse_json(name or relative, text, limits.max_json_depth)


def open_regular(base: Path, relative: str, name: str = "") -> int | None:
    """A descriptor of the regular file ``base/relative`` (None if missing), for reads
    at offsets; the caller closes it. Raises PayloadFileError like :func:`read_bytes`."""
    name = name or relative
    fd = _open_confined(base, relative, name)
    if fd is None:
        return None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise PayloadFileError(f"{name} is {_kind(mode)}; it must be a regular file")
    return fd


class PayloadReader:
    """Runs blocking reads of payload files on its own threads, under a time limit."""

    def __init__(self, limits: PayloadFileLimits) -> None:
        self.limits = limits
        self._pool = ThreadPoolExecutor(
            max_workers=limits.reader_threads, thread_name_prefix="payload-read"
        )

    async def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` off the event loop; PayloadFileError if it takes longer than
        ``read_timeout`` (PayloadReadTimeoutError; the thread is left to finish)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, fn, *args)
        try:
            return await asyncio.wait_for(future, self.limits.read_timeout)
        except TimeoutError as exc:
            raise PayloadReadTimeoutError(
                f"reading {what} took longer than {self.limits.read_timeout:g} s"
            ) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
