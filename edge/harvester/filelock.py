"""What the harvester's on-disk caches share: an exclusive lock file per cached object,
safe between harvesters on one shared filesystem, and eviction of the least recently
used objects over a size cap.

``flock`` is per open file: closing the descriptor releases the lock, also when the
process dies, so a crashed harvester never leaves a cache locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)


def try_flock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if no one holds it; never waits."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


@contextlib.asynccontextmanager
async def file_lock(path: Path, poll: float) -> AsyncIterator[None]:
    """Hold the lock file ``path``; another process may hold it, so poll every ``poll``
    seconds rather than block the event loop."""
    fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            if try_flock(fd):
                break
            await asyncio.sleep(poll)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def unless_locked(path: Path) -> Iterator[bool]:
    """Whether the lock file ``path`` was free (and is now held until the block ends)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield try_flock(fd)
    finally:
        os.close(fd)


class Cached(Protocol):
    @property
    def path(self) -> Path: ...

    @property
    def size(self) -> int: ...


C = TypeVar("C", bound=Cached)


def evict_over_cap(
    cached: Sequence[C],
    max_size: int,
    *,
    in_use: Callable[[C], bool],
    remove: Callable[[Path], bool],
    what: str,
    directory: Path,
) -> list[Path]:
    """Remove objects, least recently used first (``cached`` is in that order), until the
    total is within ``max_size``; one ``in_use`` or whose ``remove`` declines is kept."""
    total = sum(c.size for c in cached)
    removed: list[Path] = []
    for candidate in cached:
        if total <= max_size:
            break
        if in_use(candidate):
            continue
        if remove(candidate.path):
            total -= candidate.size
            removed.append(candidate.path)
            log.info("%s cache over its cap: removed %s", what, candidate.path.name)
    if total > max_size:
        log.warning(
            "%s cache %s holds %d bytes, over its cap of %d, in files in use",
            what,
            directory,
            total,
            max_size,
        )
    return removed
