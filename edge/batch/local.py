"""The ``local`` batch system: the node agent runs as a detached process on this host.

For development, the embedded default, and single-node sites where the login node is
also the compute node. Supports: submit, poll and cancel, surviving a harvester
restart (the agent keeps running in its own session; a new harvester recognises it by
pid and process start time), and the ``per_gpu`` layout: a worker agent with
``gpus_per_node`` slots (GPU ids from ``CUDA_VISIBLE_DEVICES`` when set, else 0..n-1)
taking late-bound jobs, for which ``walltime`` is the time it plans with (it is not
enforced). Does not support: queues, resource limits or several nodes; the ``slots``
setting is the only concurrency limit.

The agent is started with ``os.posix_spawn`` rather than ``subprocess.Popen`` because
the harvester tracks it by pid alone (a Popen object cannot outlive a restart, and
dropping one that still runs is reported as a leak).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import edge
from edge.batch.options import ClassBatchOptions
from edge.batch.port import BatchState, BatchSubmitError
from edge.fsproto import JobPaths
from edge.workerproto import WorkerPaths

log = logging.getLogger(__name__)


class LocalBatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["local"] = "local"
    layout: Literal["single", "per_gpu"] = "single"
    """As for the schedulers: ``per_gpu`` runs late-binding workers of
    ``gpus_per_node`` slots."""
    python: str | None = None
    """Interpreter for the node agent; None means the harvester's own."""
    gpus_per_node: int = Field(default=1, ge=1, le=64)
    """Slots of a ``per_gpu`` worker."""
    walltime: timedelta | None = None
    """The walltime a ``per_gpu`` worker plans its late binding with; not enforced."""


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of ``pid``, None if it is gone."""
    fields = _stat_fields(pid)
    return (fields[0], fields[19]) if fields else None


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid``."""
    members = []
    for entry in Path("/proc").iterdir():
        fields = _stat_fields(entry.name) if entry.name.isdigit() else None
        if fields and fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


class LocalBatch:
    kind = "local"

    def __init__(self, config: LocalBatchConfig, *, prefix: Sequence[str] = ()) -> None:
        self._python = config.python or sys.executable
        self._prefix = list(prefix)
        self._reaped: set[int] = set()

    def _agent_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The agent must import the same edge package as this harvester.
        code_root = str(Path(edge.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (code_root, env.get("PYTHONPATH", "")) if p)
        return env

    def submit(self, job_dir: Path, options: ClassBatchOptions | None = None) -> str:
        """``options`` are always None here: the site config refuses them for local."""
        paths = JobPaths(job_dir)
        batch_id = self._spawn(["run-job", str(job_dir)], paths.agent_log, {})
        log.info("started node agent for %s as %s", paths.job_id, batch_id)
        return batch_id

    def submit_worker(self, worker_dir: Path, options: ClassBatchOptions | None = None) -> str:
        """``options`` are always None here, as for :meth:`submit`."""
        paths = WorkerPaths(worker_dir)
        started = {"HPO_WORKER_STARTED": str(int(time.time()))}
        batch_id = self._spawn(["run-worker", str(worker_dir)], paths.agent_log, started)
        log.info("started worker %s as %s", paths.worker_id, batch_id)
        return batch_id

    def _spawn(self, args: Sequence[str], log_path: Path, env: Mapping[str, str]) -> str:
        argv = [*self._prefix, self._python, "-m", "edge.node", *args]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (
                os.POSIX_SPAWN_OPEN,
                1,
                str(log_path),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                0o644,
            ),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        try:
            pid = os.posix_spawn(
                argv[0], argv, {**self._agent_env(), **env}, file_actions=actions, setsid=True
            )
        except OSError as exc:
            raise BatchSubmitError(f"could not start the node agent ({argv[0]}): {exc}") from exc
        stat = _proc_stat(pid)
        return f"{pid}:{stat[1]}" if stat else str(pid)

    def _state(self, batch_id: str) -> BatchState:
        pid_text, _, started = batch_id.partition(":")
        try:
            pid = int(pid_text)
        except ValueError:
            return "unknown"
        if pid in self._reaped:
            return "done"
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # not our child: started by an earlier harvester process
        else:
            if waited == pid:
                self._reaped.add(pid)
                return "done"
            return "running"
        stat = _proc_stat(pid)
        if stat is not None:
            state, start_ticks = stat
            if state in ("Z", "X") or (started and start_ticks != started):
                return "done"
            return "running"
        if Path("/proc/self/stat").exists():
            return "done"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "done"
        except PermissionError:
            return "unknown"
        return "running"

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        return {batch_id: self._state(batch_id) for batch_id in batch_ids}

    def cancel(self, batch_id: str) -> None:
        """SIGTERM a running agent, which stops its payload within the grace period;
        if the agent is gone (killed with SIGKILL), SIGKILL what is left in its session.

        The agent leads its session, so the session id is its pid; Linux does not
        reuse a pid while a session of that id exists, so the sweep cannot hit
        strangers.
        """
        try:
            pid = int(batch_id.partition(":")[0])
        except ValueError:
            return
        if self._state(batch_id) == "running":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            return
        for member in _session_members(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signal.SIGKILL)
