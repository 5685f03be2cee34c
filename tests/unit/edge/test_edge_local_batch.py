"""The local batch system: detached agents, polled by pid even after a restart."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from edge.batch import LocalBatchConfig, open_batch
from edge.batch.local import LocalBatch, _session_members
from edge.fsproto import JobPaths


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter, to watch the process lifecycle."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_submitted_agent_runs_detached_and_is_reaped(tmp_path: Path) -> None:
    job_dir = tmp_path / "jobs" / "job-1"
    job_dir.mkdir(parents=True)
    python = fake_python(
        tmp_path, 'echo "agent $*"; echo "session $(cut -d\' \' -f6 /proc/$$/stat)"'
    )
    batch = LocalBatch(LocalBatchConfig(python=python))
    batch_id = batch.submit(job_dir)
    pid = int(batch_id.split(":")[0])
    wait_for(lambda: batch.poll([batch_id])[batch_id] == "done")
    log = (job_dir / "agent.log").read_text().split("\n")
    assert log[0] == f"agent -m edge.node run-job {job_dir}"
    assert log[1].split() == ["session", str(pid)]  # its own session
    assert batch.poll([batch_id]) == {batch_id: "done"}


def test_a_process_started_by_someone_else_is_recognised_by_pid(tmp_path: Path) -> None:
    # A grandchild is not our child: the situation after a harvester restart.
    out = subprocess.run(
        ["/bin/sh", "-c", "sleep 1.5 > /dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout.strip())
    batch = LocalBatch(LocalBatchConfig())
    start_ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    batch_id = f"{pid}:{start_ticks}"
    assert batch.poll([batch_id]) == {batch_id: "running"}
    assert batch.poll([f"{pid}:1"]) == {f"{pid}:1": "done"}  # pid reused by another process
    wait_for(lambda: batch.poll([batch_id])[batch_id] == "done")


def test_cancel_stops_the_agent_session(tmp_path: Path) -> None:
    job_dir = tmp_path / "jobs" / "job-1"
    job_dir.mkdir(parents=True)
    batch = LocalBatch(LocalBatchConfig(python=fake_python(tmp_path, "sleep 60")))
    batch_id = batch.submit(job_dir)
    assert batch.poll([batch_id]) == {batch_id: "running"}
    batch.cancel(batch_id)
    wait_for(lambda: batch.poll([batch_id])[batch_id] == "done")
    batch.cancel(batch_id)  # idempotent


def test_isolated_network_prefix_is_checked(tmp_path: Path) -> None:
    batch = open_batch(LocalBatchConfig(), isolate_network=True)
    assert isinstance(batch, LocalBatch)
    assert batch._prefix[-1] == "-n"


def test_cancel_after_the_agent_was_killed_sweeps_its_payload(
    stage: Callable[..., JobPaths],
) -> None:
    # The payload's own group dies with the agent (edge/node/leash.py); a child that
    # left that group for one of its own stays in the agent's session until the sweep.
    escape = "import os, time; os.setpgid(0, 0); open('escaped', 'w'); time.sleep(60)"
    paths = stage(f"{shlex.quote(sys.executable)} -c {shlex.quote(escape)} & sleep 60; wait")
    batch = LocalBatch(LocalBatchConfig())
    batch_id = batch.submit(paths.dir)
    agent_pid = int(batch_id.split(":")[0])
    wait_for(lambda: paths.status.exists() and json.loads(paths.status.read_text())["pid"])
    wait_for(lambda: (paths.work / "escaped").exists())
    os.kill(agent_pid, signal.SIGKILL)
    wait_for(lambda: batch.poll([batch_id])[batch_id] == "done")
    assert len(_session_members(agent_pid)) >= 1  # the escaped child outlived its agent
    batch.cancel(batch_id)
    wait_for(lambda: not _session_members(agent_pid))
