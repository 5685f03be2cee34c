"""The late-binding worker agent as a real process over a real edge root: one slot per
GPU of the allocation, inbox claims, the walltime rule and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.batch.script import code_root
from edge.documents import NodeStatus
from edge.fsproto import JobPaths, read_json
from edge.node.worker import DurationEstimate, gpu_ids
from edge.workerproto import (
    WorkerPaths,
    WorkerRecord,
    WorkerSettings,
    dispatch,
    entries,
    expected_seconds,
)

StageFactory = Callable[..., JobPaths]

PROBE = 'printf "%s" "$CUDA_VISIBLE_DEVICES" > gpu.txt\nsleep "$1"\nexit "$2"\n'


def make_worker(root: Path, **settings: float) -> WorkerPaths:
    paths = WorkerPaths(root / "workers" / "w-test")
    paths.make()
    values: dict[str, float] = {"slots": 2, "idle_seconds": 0.5, "heartbeat_interval": 0.2}
    values.update(settings)
    record = WorkerRecord(
        worker_id="w-test",
        kind="local",
        layout="per_gpu",
        settings=WorkerSettings.model_validate(values),
    )
    paths.save_record(record)
    return paths


def start_worker(
    paths: WorkerPaths, *, gpus: str, started: float | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(code_root()),
        "CUDA_VISIBLE_DEVICES": gpus,
        "HPO_WORKER_STARTED": str(int(time.time() if started is None else started)),
    }
    log = open(paths.agent_log, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.node", "run-worker", str(paths.dir)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def status_of(job: JobPaths) -> NodeStatus:
    return NodeStatus.model_validate(read_json(job.status))


def finish(proc: subprocess.Popen[bytes], paths: WorkerPaths) -> None:
    try:
        assert proc.wait(timeout=60) == 0, paths.agent_log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_each_slot_runs_one_job_at_a_time_on_its_own_gpu_and_takes_the_next(
    stage: StageFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    jobs = [
        stage("sh ./probe.sh 0.3 0", job_id=f"job-{i}", task_files={"probe.sh": PROBE})
        for i in range(5)
    ]
    worker = make_worker(root)
    for job in jobs:
        dispatch(worker, job.job_id)
    finish(start_worker(worker, gpus="3,5"), worker)

    seen = {(job.work / "gpu.txt").read_text() for job in jobs}
    assert seen == {"3", "5"}  # one GPU per payload, never "3,5"
    for job in jobs:
        status = status_of(job)
        assert status.state == "finished"
        assert status.gpus == [(job.work / "gpu.txt").read_text()]
        assert "claimed by worker w-test" in job.agent_log.read_text()
    assert sorted(entries(worker.claimed)) == [j.job_id for j in jobs]
    assert entries(worker.inbox) == []
    final = worker.read_status()
    assert final is not None and final.state == "exited"
    assert "idle" in final.reason
    assert [s.gpu for s in final.slots] == ["3", "5"]
    assert sum(s.jobs_run for s in final.slots) == 5


def test_a_job_that_does_not_fit_in_the_walltime_left_stays_in_the_inbox(
    stage: StageFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    failing = stage("sh ./probe.sh 0 1", job_id="job-fail", task_files={"probe.sh": PROBE})
    later = stage("sh ./probe.sh 0 0", job_id="job-later", task_files={"probe.sh": PROBE})
    # 300 s of walltime left, a job expected to take 1000 s: only the slot's first job
    # is taken (a failed run teaches the worker nothing about durations).
    worker = make_worker(root, slots=1, walltime_seconds=400, expected_job_seconds=1000)
    dispatch(worker, failing.job_id)
    dispatch(worker, later.job_id)
    finish(start_worker(worker, gpus="0", started=time.time() - 100), worker)
    assert status_of(failing).state == "failed"
    final = worker.read_status()
    assert final is not None and final.state == "exited"
    assert "walltime" in final.reason
    assert not later.status.exists()
    assert entries(worker.inbox) == [later.job_id]


def test_a_finished_job_teaches_the_worker_that_the_next_one_fits(
    stage: StageFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    first = stage("sh ./probe.sh 0 0", job_id="job-a", task_files={"probe.sh": PROBE})
    second = stage("sh ./probe.sh 0 0", job_id="job-b", task_files={"probe.sh": PROBE})
    worker = make_worker(root, slots=1, walltime_seconds=400, expected_job_seconds=1000)
    dispatch(worker, first.job_id)
    dispatch(worker, second.job_id)
    finish(start_worker(worker, gpus="0", started=time.time() - 100), worker)
    assert status_of(first).state == "finished"
    assert status_of(second).state == "finished"
    final = worker.read_status()
    assert final is not None and final.expected_job_seconds is not None
    assert final.expected_job_seconds < 1000


def test_an_inbox_entry_carries_the_expected_run_time_when_known(tmp_path: Path) -> None:
    worker = make_worker(tmp_path / "root")
    dispatch(worker, "job-a", 12.5)
    dispatch(worker, "job-b")
    (worker.inbox / "job-c").write_text('{"job_id": "job-c", "expected_seconds": "soon"}')
    assert expected_seconds(worker, "job-a") == 12.5
    assert expected_seconds(worker, "job-b") is None
    assert expected_seconds(worker, "job-c") is None  # unreadable: as if unknown
    assert expected_seconds(worker, "job-gone") is None


def test_the_longest_expected_job_starts_first_and_the_oldest_among_equals(
    stage: StageFactory, tmp_path: Path
) -> None:
    """One slot, so the start order is the claim order: the entries with a known
    expected run time longest first (an unknown one counts as the worker's estimate,
    here 5 s: the payloads fail, and a failed run teaches the worker nothing about
    durations), equal ones oldest first."""
    root = tmp_path / "root"
    expected = {"job-a": 1.0, "job-b": 9.0, "job-c": None, "job-d": 9.0, "job-e": 3.0}
    jobs = {
        job_id: stage("sh ./probe.sh 0 1", job_id=job_id, task_files={"probe.sh": PROBE})
        for job_id in expected
    }
    worker = make_worker(root, slots=1, expected_job_seconds=5)
    for n, (job_id, seconds) in enumerate(expected.items()):
        dispatch(worker, job_id, seconds)
        entry = worker.inbox / job_id
        os.utime(entry, (1_000_000 + n, 1_000_000 + n))  # distinct ages, in this order
    finish(start_worker(worker, gpus="0"), worker)
    started = sorted(expected, key=lambda j: status_of(jobs[j]).points[0].started_at)
    assert started == ["job-b", "job-d", "job-c", "job-e", "job-a"]


def test_a_short_known_job_still_fills_the_end_of_the_allocation(
    stage: StageFactory, tmp_path: Path
) -> None:
    """100 s of walltime left: the job expected to take 1000 s stays in the inbox, the
    one known to take 2 s runs after it in the same slot, though the worker's own
    estimate (1000 s) would have declined every job after the first."""
    root = tmp_path / "root"
    first = stage("sh ./probe.sh 0 0", job_id="job-first", task_files={"probe.sh": PROBE})
    long = stage("sh ./probe.sh 0 0", job_id="job-long", task_files={"probe.sh": PROBE})
    short = stage("sh ./probe.sh 0 0", job_id="job-short", task_files={"probe.sh": PROBE})
    worker = make_worker(root, slots=1, walltime_seconds=400, expected_job_seconds=1000)
    dispatch(worker, first.job_id)
    for job, seconds in ((long, 1000.0), (short, 2.0)):
        dispatch(worker, job.job_id, seconds)
    for n, job in enumerate((first, long, short)):
        os.utime(worker.inbox / job.job_id, (1_000_000 + n, 1_000_000 + n))
    finish(start_worker(worker, gpus="0", started=time.time() - 300), worker)
    assert status_of(first).state == "finished"
    assert status_of(short).state == "finished"
    assert not long.status.exists() and entries(worker.inbox) == [long.job_id]
    final = worker.read_status()
    assert final is not None and final.state == "exited" and "walltime" in final.reason


def test_sigterm_stops_every_slot_payload_and_the_worker(
    stage: StageFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    jobs = [
        stage("sh ./probe.sh 60 0", job_id=f"job-{i}", task_files={"probe.sh": PROBE}, grace=2.0)
        for i in range(3)
    ]
    worker = make_worker(root)
    for job in jobs:
        dispatch(worker, job.job_id)
    proc = start_worker(worker, gpus="0,1")
    deadline = time.monotonic() + 30
    while sum(j.status.exists() and status_of(j).pid is not None for j in jobs) < 2:
        assert time.monotonic() < deadline, worker.agent_log.read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    finish(proc, worker)
    running = [j for j in jobs if j.status.exists()]
    assert len(running) == 2
    for job in running:
        status = status_of(job)
        assert status.state == "killed"
        assert "SIGTERM" in status.reason
    assert len(entries(worker.inbox)) == 1  # the third job is left for another worker


def test_gpu_ids_come_from_the_allocation() -> None:
    assert gpu_ids({"CUDA_VISIBLE_DEVICES": "2,3,7"}, 2) == ["2", "3"]
    assert gpu_ids({"SLURM_JOB_GPUS": "4,5"}, 2) == ["4", "5"]
    assert gpu_ids({"SLURM_STEP_GPUS": "1", "SLURM_JOB_GPUS": "0,1"}, 1) == ["1"]
    assert gpu_ids({}, 3) == ["0", "1", "2"]


def test_expected_duration_is_the_default_until_a_run_finished_then_the_longest() -> None:
    estimate = DurationEstimate(default=900)
    assert estimate.expected() == 900
    estimate.add(12)
    estimate.add(30)
    estimate.add(5)
    assert estimate.expected() == 30


@pytest.mark.parametrize("bad", ["", "{}", '{"worker_id": "w", "kind": "local"}'])
def test_a_worker_without_settings_exits_with_a_message(tmp_path: Path, bad: str) -> None:
    paths = WorkerPaths(tmp_path / "workers" / "w-x")
    paths.make()
    if bad:
        paths.record.write_text(bad)
    done = subprocess.run(
        [sys.executable, "-m", "edge.node", "run-worker", str(paths.dir)],
        env={**os.environ, "PYTHONPATH": str(code_root())},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no worker settings" in done.stderr
    assert "Traceback" not in done.stderr
