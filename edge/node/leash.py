"""The payload dies with its node agent, whatever kills the agent.

Two mechanisms, because either alone leaves something behind:

* **PR_SET_PDEATHSIG.** The payload's first process is started with the kernel's
  parent-death signal set to SIGKILL (``prctl`` in the child between ``fork`` and
  ``exec``), so it dies the moment the agent does, even after ``kill -9``. That signal
  reaches only that one process, not what it started.
* **The leash.** Beside the payload the agent starts a tiny ``/bin/sh`` of its own
  process group that blocks reading a pipe whose only writer is the agent. When the
  agent ends the payload normally it writes a line and the leash exits; when the agent
  dies, the kernel closes its end, the read sees end-of-file and the leash kills the
  payload's whole process group (``kill -KILL -<pgid>``): shells, ``torchrun``
  workers, data loaders, background jobs.

What escapes both: a process that leaves the payload's process group on purpose
(``setsid``, a double fork into a new group). Runtimes that make a session of their
own therefore have to tie it to their first process themselves, as they do: bwrap with
``--die-with-parent``, charliecloud through ``setpriv --pdeathsig`` and ``unshare
--kill-child``; on a batch system, the job's cgroup takes the rest when the batch job
ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
from collections.abc import Callable

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LEASH_SCRIPT = 'read -r _ || kill -s KILL -- "-$1"'
SHELL = "/bin/sh"


def _load_prctl() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):  # not Linux: the leash still holds
        return None
    return prctl


_PRCTL = _load_prctl()
"""Resolved once at import, so the child after ``fork`` only calls it."""


def die_with_parent() -> None:
    """``preexec_fn`` of the payload: SIGKILL when the process that forked it ends."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


class Leash:
    """Kills process group ``pgid`` if this process dies before :meth:`release`."""

    def __init__(self, pgid: int) -> None:
        read_end, self._write_end = os.pipe()  # both close-on-exec: no one else holds them
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
                [SHELL, "-c", LEASH_SCRIPT, "leash", str(pgid)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                process_group=0,  # not in the payload's group, which it must outlive
                close_fds=True,
            )
        except OSError as exc:
            log.warning("no leash for payload group %s: %s", pgid, exc)
            self._proc = None
        finally:
            os.close(read_end)

    def release(self) -> None:
        """The payload ended under the agent's eyes: let the leash go without a kill."""
        with contextlib.suppress(OSError):
            os.write(self._write_end, b"done\n")
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)


__all__ = ["Leash", "die_with_parent"]
