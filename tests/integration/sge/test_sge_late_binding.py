"""Layout 1 on a real Grid Engine: one ``per_gpu`` job holding 2 of the cell's six
``gpu`` consumables runs five jobs, one slot per payload, the later ones late-bound into
the same Grid Engine job. Grid Engine 8.1 names no devices, so the worker numbers its
slots 0..1 itself. The harvester's worker pool drives it, as the daemon's scan would."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.batch import SgeBatchConfig
from edge.batch.options import ClassBatchOptions
from edge.batch.sge import SgeBatch
from edge.documents import NodeStatus
from edge.fsproto import JobPaths, read_json
from edge.harvester.pool import WorkerPool
from edge.workerproto import WorkerSettings, entries
from tests.integration.sge.conftest import StageFactory

pytestmark = [pytest.mark.sge, pytest.mark.slow, pytest.mark.timeout(240)]

PROBE = 'printf "%s" "$CUDA_VISIBLE_DEVICES" > gpu.txt\nsleep 1\n'


@pytest.fixture
def sge_per_gpu(sge_cell: dict[str, str]) -> Iterator[SgeBatch]:
    batch = SgeBatch(SgeBatchConfig(layout="per_gpu", gpus_per_node=2, walltime=300))  # type: ignore[arg-type]
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


def test_one_grid_engine_job_runs_more_jobs_than_gpus(
    sge_per_gpu: SgeBatch, stage: StageFactory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    jobs = [
        stage("sh ./probe.sh", job_id=f"job-{i}", task_files={"probe.sh": PROBE}) for i in range(5)
    ]
    settings = WorkerSettings(
        slots=2,
        walltime_seconds=300,
        expected_job_seconds=30,
        idle_seconds=3,
        heartbeat_interval=1,
        poll_interval=0.2,
    )
    pool = WorkerPool(root, sge_per_gpu, settings, max_slots=2, queue_per_slot=1, lost_after=60)

    def ended(job: JobPaths) -> bool:
        raw = read_json(job.status)
        return isinstance(raw, dict) and raw.get("state") in ("finished", "failed", "killed")

    deadline = time.monotonic() + 200
    while not all(ended(job) for job in jobs):
        result = pool.step({job.job_id: None for job in jobs if not ended(job)}, frozenset())
        assert not result.failed, result.failed
        assert time.monotonic() < deadline, [
            w.paths.agent_log.read_text()
            for w in pool.workers.values()
            if w.paths.agent_log.exists()
        ]
        time.sleep(0.5)

    (worker,) = pool.workers.values()
    assert sorted(entries(worker.paths.claimed)) == sorted(j.job_id for j in jobs)
    batch_ids = set()
    for job in jobs:
        status = NodeStatus.model_validate(read_json(job.status))
        assert status.state == "finished", job.agent_log.read_text()
        assert (job.work / "gpu.txt").read_text() in ("0", "1")
        batch_ids.update(re.findall(r"\(batch job (\S+)\)", job.agent_log.read_text()))
    assert batch_ids == {worker.record.batch_id}  # all five in the same Grid Engine job
    script = (worker.paths.dir / "batch.sh").read_text()
    assert "#$ -l gpu=2" in script and "run-worker" in script
