"""Late binding (layout ``per_gpu``) with compute classes that carry batch options: a
worker is submitted per class with that class's options, and a job is dispatched only
to a worker of its own class. The pool's decisions against a recording batch port, and
the Slurm script such a worker gets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.batch import BatchState, SlurmBatchConfig
from edge.batch.options import ClassBatchOptions
from edge.batch.script import Worker
from edge.batch.slurm import SlurmBatch
from edge.config import SiteConfig
from edge.harvester.pool import late_binding_pool
from edge.workerproto import WorkerPaths, entries


class RecordingBatch:
    """Submits nothing: records each worker's directory and options; all are pending."""

    kind = "slurm"

    def __init__(self) -> None:
        self.workers: list[tuple[Path, ClassBatchOptions | None]] = []

    def submit(self, job_dir: Path, options: ClassBatchOptions | None = None) -> str:
        raise AssertionError("late binding submits workers, not jobs")

    def submit_worker(self, worker_dir: Path, options: ClassBatchOptions | None = None) -> str:
        self.workers.append((worker_dir, options))
        return f"batch-{len(self.workers)}"

    def poll(self, batch_ids: Sequence[str]) -> dict[str, BatchState]:
        return dict.fromkeys(batch_ids, "pending")

    def cancel(self, batch_id: str) -> None:
        pass


def config(tmp_path: Path, **extra: Any) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": "s",
            "api_url": "https://api.example.org",
            "token": "t",
            "root": str(tmp_path / "root"),
            "slots": 8,
            "batch": {"kind": "slurm", "layout": "per_gpu", "gpus_per_node": 2},
            "compute_classes": [
                {"name": "a100", "gpus_per_node": 2, "batch": {"partition": "gpu-a100"}},
                {"name": "v100", "gpus_per_node": 2, "batch": {"partition": "gpu-v100"}},
            ],
            **extra,
        }
    )


def test_each_class_gets_its_own_workers_with_its_batch_options(tmp_path: Path) -> None:
    site = config(tmp_path)
    batch = RecordingBatch()
    pool = late_binding_pool(site, batch)
    classes = {"a-1": "a100", "a-2": "a100", "v-1": "v100"}
    jobs = dict.fromkeys(classes, object())
    pool.step(jobs, frozenset(), classes=classes)
    by_class = {options.partition if options else None: d for d, options in batch.workers}
    assert sorted(by_class, key=str) == ["gpu-a100", "gpu-v100"], "one worker per class"
    for partition, name in (("gpu-a100", "a100"), ("gpu-v100", "v100")):
        paths = WorkerPaths(by_class[partition])
        record = paths.read_record()
        assert record is not None and record.compute_class == name
        wanted = sorted(j for j, c in classes.items() if c == name)
        assert sorted(entries(paths.inbox)) == wanted, "a job goes to its own class's worker"

    # The next step finds room in the a100 worker (4 entries: 2 slots, 1 queued each)
    # for one more a100 job; a v100 job does not go there either.
    classes |= {"a-3": "a100", "v-2": "v100"}
    pool.step(dict.fromkeys(classes, object()), frozenset(), classes=classes)
    assert len(batch.workers) == 2
    assert sorted(entries(WorkerPaths(by_class["gpu-a100"]).inbox)) == ["a-1", "a-2", "a-3"]
    assert sorted(entries(WorkerPaths(by_class["gpu-v100"]).inbox)) == ["v-1", "v-2"]


def test_a_class_worker_script_asks_slurm_for_its_class(tmp_path: Path) -> None:
    site = config(tmp_path)
    batch = RecordingBatch()
    pool = late_binding_pool(site, batch)
    pool.step({"a-1": object()}, frozenset(), classes={"a-1": "a100"})
    ((worker_dir, options),) = batch.workers
    slurm = SlurmBatch(SlurmBatchConfig(layout="per_gpu", gpus_per_node=2, partition="cpu"))
    script = slurm.render(Worker(worker_dir.name, worker_dir, ()), options)
    lines = [line.removeprefix("#SBATCH ") for line in script.splitlines() if "#SBATCH" in line]
    assert "--partition=gpu-a100" in lines and "--partition=cpu" not in lines


def test_jobs_of_a_class_without_batch_options_share_the_default_workers(
    tmp_path: Path,
) -> None:
    site = config(
        tmp_path,
        compute_classes=[
            {"name": "a100", "gpus_per_node": 2, "batch": {"partition": "gpu-a100"}},
            {"name": "plain", "gpus_per_node": 2},
        ],
    )
    batch = RecordingBatch()
    pool = late_binding_pool(site, batch)
    classes: dict[str, str | None] = {"p-1": "plain", "n-1": None, "a-1": "a100"}
    pool.step(dict.fromkeys(classes, object()), frozenset(), classes=classes)
    options = sorted((o.partition if o else "") for _, o in batch.workers)
    assert options == ["", "gpu-a100"]


def test_a_class_whose_nodes_hold_other_gpus_than_a_worker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"compute_classes\[0\] \(a100\)\.gpus_per_node"):
        config(
            tmp_path,
            compute_classes=[
                {"name": "a100", "gpus_per_node": 4, "batch": {"partition": "gpu-a100"}}
            ],
        )
