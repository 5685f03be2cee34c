"""Run one payload process to its end while keeping the job alive or killing it.

The payload gets its own process group, so a kill reaches everything it started
(``torchrun`` workers, shells, data loaders) and nothing of the agent. It stays in the
agent's session, so a batch system can still find and kill it, and it dies with the
agent (edge/node/leash.py): its first process gets SIGKILL from the kernel when the
agent ends, and a leash kills the whole group when the agent ends without releasing
it, ``kill -9`` included. While it runs, the agent's heartbeat
is touched every interval; when a stop is requested the group gets SIGTERM and, after
the grace period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.node.leash import Leash, die_with_parent
from shared.runtime import Launch

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25


@dataclass
class Supervision:
    heartbeat: Callable[[], None]
    """Touches the job's heartbeat file."""
    stop_reason: Callable[[], str | None]
    """Returns why the payload must stop now, or None; polled every tick."""
    heartbeat_interval: float
    kill_grace_seconds: float


@dataclass(frozen=True)
class PayloadExit:
    exit_code: int
    pid: int
    stop_reason: str | None


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def run_payload(
    launch: Launch, log_file: int, sup: Supervision, on_start: Callable[[int], None]
) -> PayloadExit:
    """Start ``launch`` with stdout and stderr to ``log_file`` (an open descriptor) and
    wait for it. Raises OSError if it cannot be started at all."""
    proc = subprocess.Popen(  # noqa: S603 - argv built by the runtime, values quoted
        launch.argv,
        cwd=launch.cwd,
        env=launch.env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        process_group=0,
        preexec_fn=die_with_parent,  # only a prctl, resolved at import (leash.py)
    )
    leash = Leash(proc.pid)
    try:
        return _supervise(proc, sup, on_start)
    finally:
        # Whatever the payload left behind in its group (background jobs) goes with it.
        _signal_group(proc.pid, signal.SIGKILL)
        leash.release()


def _supervise(
    proc: subprocess.Popen[bytes], sup: Supervision, on_start: Callable[[int], None]
) -> PayloadExit:
    on_start(proc.pid)
    tick = min(TICK_SECONDS, sup.heartbeat_interval / 2)
    next_beat = time.monotonic() + sup.heartbeat_interval
    reason: str | None = None
    kill_at: float | None = None
    while True:
        try:
            code = proc.wait(timeout=tick)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if now >= next_beat:
            sup.heartbeat()
            next_beat = now + sup.heartbeat_interval
        if reason is None:
            reason = sup.stop_reason()
            if reason is not None:
                log.info("stopping payload pid %s: %s", proc.pid, reason)
                _signal_group(proc.pid, signal.SIGTERM)
                kill_at = now + sup.kill_grace_seconds
        elif kill_at is not None and now >= kill_at:
            log.warning("payload pid %s outlived the grace period: SIGKILL", proc.pid)
            _signal_group(proc.pid, signal.SIGKILL)
            kill_at = None
    return PayloadExit(exit_code=code, pid=proc.pid, stop_reason=reason)
