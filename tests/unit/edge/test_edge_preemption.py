"""A node agent stopped by the batch system (SIGTERM) snapshots and ends preempted.

The agent runs as its own process (``python -m edge.node run-job``), exactly as a batch
script starts it, and gets a real SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from edge.documents import NodeSettings, NodeStatus
from edge.fsproto import JobPaths
from edge.harvester.staging import stage_job
from edge.snapshots import list_snapshots, newest_snapshot
from shared.edge_api import CheckpointConfig, JobSpec

SpecFactory = Callable[..., JobSpec]

TRAIN = """\
import os, sys, time
epoch = int(open("epoch.txt").read()) if os.path.exists("epoch.txt") else 0
while True:
    time.sleep(0.1)
    epoch += 1
    open("epoch.tmp", "w").write(str(epoch))
    os.replace("epoch.tmp", "epoch.txt")
"""


def _stage(tmp_path: Path, make_spec: SpecFactory, save: list[str]) -> JobPaths:
    spec = make_spec(
        f"{sys.executable} train.py",
        task_files={"train.py": TRAIN},
        checkpoint_config=CheckpointConfig(save=save, interval=1),
    )
    node = NodeSettings(heartbeat_interval=0.1, kill_grace_seconds=5, checkpoint_unit_seconds=0.3)
    paths, _ = stage_job(tmp_path / "root", spec, node)
    return paths


def _start_agent(paths: JobPaths) -> subprocess.Popen[bytes]:
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": root}
    return subprocess.Popen(
        [sys.executable, "-m", "edge.node", "run-job", str(paths.dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_takes_a_final_snapshot_and_ends_preempted(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    paths = _stage(tmp_path, make_spec, ["epoch.txt"])
    agent = _start_agent(paths)
    try:
        _wait_for(lambda: len(list_snapshots(paths.checkpoints)) >= 2, "two periodic snapshots")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 1
    finally:
        agent.kill()
    status = NodeStatus.model_validate_json(paths.status.read_text())
    assert status.state == "preempted"
    assert "SIGTERM" in status.reason
    newest = newest_snapshot(paths.checkpoints)
    assert newest is not None
    with tarfile.open(newest.path) as tar:
        handle = tar.extractfile("epoch.txt")
        assert handle is not None
        saved = handle.read().decode()
    # The final snapshot holds the last epoch the payload wrote, not an older one.
    assert saved == (paths.work / "epoch.txt").read_text()
    assert [p.name for p in paths.checkpoints.iterdir() if p.name.startswith(".")] == []


def test_sigterm_without_anything_saved_ends_killed(tmp_path: Path, make_spec: SpecFactory) -> None:
    paths = _stage(tmp_path, make_spec, ["never-written.pt"])
    agent = _start_agent(paths)
    try:
        _wait_for(lambda: (paths.work / "epoch.txt").exists(), "the payload to start")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 1
    finally:
        agent.kill()
    status = NodeStatus.model_validate_json(paths.status.read_text())
    assert status.state == "killed"
    assert list_snapshots(paths.checkpoints) == []


def test_a_kill_from_the_harvester_is_not_a_preemption(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    paths = _stage(tmp_path, make_spec, ["epoch.txt"])
    agent = _start_agent(paths)
    try:
        _wait_for(lambda: newest_snapshot(paths.checkpoints) is not None, "a snapshot")
        paths.kill.write_text("task cancelled\n")
        assert agent.wait(timeout=30) == 1
    finally:
        agent.kill()
    assert NodeStatus.model_validate_json(paths.status.read_text()).state == "killed"


def test_a_snapshot_over_the_cap_is_noted_for_the_user(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    spec = make_spec(
        f"{sys.executable} -c \"import os; open('big.bin','wb').write(os.urandom(200000))\"; "
        "sleep 2",
        checkpoint_config=CheckpointConfig(save=["big.bin"], interval=1),
    )
    node = NodeSettings(
        heartbeat_interval=0.1, checkpoint_unit_seconds=0.2, checkpoint_max_bytes=10_000
    )
    paths, _ = stage_job(tmp_path / "root", spec, node)
    agent = _start_agent(paths)
    assert agent.wait(timeout=30) == 0
    status = NodeStatus.model_validate_json(paths.status.read_text())
    assert status.state == "finished"
    assert "over 10000 bytes" in status.checkpoint_note
    assert "checkpoint not saved" in paths.payload_log.read_text()
    assert list_snapshots(paths.checkpoints) == []


FINISH = """\
import json, os
open("epoch.txt", "w").write("7")
json.dump({"loss": 0.5}, open("output.json", "w"))
"""


def test_a_finished_job_snapshots_its_final_state_only_when_asked(
    tmp_path: Path, make_spec: SpecFactory
) -> None:
    """Population-based training starts later points from a finished point's final
    checkpoint; other tasks keep what they had (no snapshot at a normal end)."""
    for final in (True, False):
        spec = make_spec(
            f"{sys.executable} train.py",
            task_files={"train.py": FINISH},
            checkpoint_config=CheckpointConfig(save=["epoch.txt"], interval=1, final=final),
        )
        # No periodic snapshot can fall due during the run: an hour per interval.
        node = NodeSettings(heartbeat_interval=0.1, checkpoint_unit_seconds=3600)
        paths, _ = stage_job(tmp_path / f"root-{final}", spec, node)
        agent = _start_agent(paths)
        try:
            assert agent.wait(timeout=60) == 0
        finally:
            agent.kill()
        assert NodeStatus.model_validate_json(paths.status.read_text()).state == "finished"
        newest = newest_snapshot(paths.checkpoints)
        if not final:
            assert newest is None
            continue
        assert newest is not None
        with tarfile.open(newest.path) as tar:
            handle = tar.extractfile("epoch.txt")
            assert handle is not None and handle.read() == b"7"
