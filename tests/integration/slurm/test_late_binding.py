"""Layout 1 on a real Slurm: one ``per_gpu`` batch job on the 6-GPU node runs more jobs
than it has GPUs, one GPU per payload, the later jobs late-bound into the same batch
job. The harvester's worker pool drives it, as the daemon's scan would."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.batch import SlurmBatchConfig
from edge.batch.options import ClassBatchOptions
from edge.batch.slurm import SlurmBatch
from edge.documents import NodeStatus
from edge.fsproto import JobPaths, read_json
from edge.harvester.pool import WorkerPool
from edge.workerproto import WorkerSettings, entries

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(240)]

StageFactory = Callable[..., JobPaths]

PROBE = 'printf "%s" "$CUDA_VISIBLE_DEVICES" > gpu.txt\nsleep 2\n'


@pytest.fixture
def slurm_per_gpu(slurm_conf: str) -> Iterator[SlurmBatch]:
    batch = SlurmBatch(
        SlurmBatchConfig(layout="per_gpu", gpus_per_node=6, walltime=300)  # type: ignore[arg-type]
    )
    submitted: list[str] = []
    original = batch.submit_worker

    def tracked(worker_dir: Path, options: ClassBatchOptions | None = None) -> str:
        batch_id = original(worker_dir, options)
        submitted.append(batch_id)
        return batch_id

    batch.submit_worker = tracked  # type: ignore[method-assign]
    yield batch
    for batch_id in submitted:
        batch.cancel(batch_id)


def make_pool(root: Path, batch: SlurmBatch) -> WorkerPool:
    settings = WorkerSettings(
        slots=6,
        walltime_seconds=300,
        expected_job_seconds=30,
        idle_seconds=3,
        heartbeat_interval=1,
        poll_interval=0.2,
    )
    return WorkerPool(root, batch, settings, max_slots=6, queue_per_slot=1, lost_after=60)


def test_one_batch_job_runs_more_jobs_than_gpus_one_gpu_each(
    slurm_per_gpu: SlurmBatch, stage: StageFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    jobs = [
        stage("sh ./probe.sh", job_id=f"job-{i}", task_files={"probe.sh": PROBE}) for i in range(9)
    ]
    pool = make_pool(root, slurm_per_gpu)

    def ended(job: JobPaths) -> bool:
        raw = read_json(job.status)
        return isinstance(raw, dict) and raw.get("state") in ("finished", "failed", "killed")

    deadline = time.monotonic() + 180
    while not all(ended(job) for job in jobs):
        active = {job.job_id: None for job in jobs if not ended(job)}
        result = pool.step(active, frozenset())
        assert not result.failed, result.failed
        assert time.monotonic() < deadline, [
            w.paths.agent_log.read_text() for w in pool.workers.values()
        ]
        time.sleep(0.5)

    workers = list(pool.workers.values())
    assert len(workers) == 1
    worker = workers[0]
    assert sorted(entries(worker.paths.claimed)) == sorted(j.job_id for j in jobs)
    batch_ids = set()
    for job in jobs:
        status = NodeStatus.model_validate(read_json(job.status))
        assert status.state == "finished", job.agent_log.read_text()
        seen = (job.work / "gpu.txt").read_text()
        assert re.fullmatch(r"[0-9]+", seen), seen  # exactly one GPU
        assert status.gpus == [seen]
        batch_ids.update(re.findall(r"\(batch job (\S+)\)", job.agent_log.read_text()))
    assert batch_ids == {worker.record.batch_id}  # all nine in the same Slurm job
    gpus = {(job.work / "gpu.txt").read_text() for job in jobs}
    assert len(gpus) == 6  # every GPU of the node was used


@pytest.fixture
def gpus_held(slurm_conf: str) -> Iterator[str]:
    """A plain Slurm job holding all six GPUs, so a worker submitted now stays queued."""
    done = subprocess.run(
        ["sbatch", "--parsable", "--gres=gpu:6", "--output=/dev/null", "--wrap", "sleep 300"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    batch_id = done.stdout.strip().split(";")[0]
    yield batch_id
    subprocess.run(["scancel", batch_id], timeout=30, check=False)


def squeue_state(batch_id: str) -> str:
    done = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={batch_id}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip()


def test_a_queued_worker_left_with_nothing_to_run_is_cancelled(
    slurm_per_gpu: SlurmBatch, gpus_held: str, stage: StageFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    job = stage("sh ./probe.sh", job_id="job-0", task_files={"probe.sh": PROBE})
    pool = make_pool(root, slurm_per_gpu)
    assert not pool.step({job.job_id: None}, frozenset()).failed
    (worker,) = pool.workers.values()
    assert entries(worker.paths.inbox) == [job.job_id]
    assert worker.record.batch_id is not None
    assert squeue_state(worker.record.batch_id) == "PENDING"  # the GPUs are held

    job.kill.write_text("task cancelled\n")  # what the harvester writes for the api
    result = pool.step({job.job_id: None}, frozenset({job.job_id}))
    assert result.taken_back == [job.job_id]
    assert entries(worker.paths.withdrawn) == [job.job_id]
    record = worker.paths.read_record()
    assert record is not None and record.released
    deadline = time.monotonic() + 30
    while squeue_state(worker.record.batch_id) not in ("", "CANCELLED"):
        assert time.monotonic() < deadline, squeue_state(worker.record.batch_id)
        time.sleep(0.5)
    assert not job.status.exists()  # it never ran
