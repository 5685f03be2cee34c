"""The Slurm adapter's parsing and command-line contract (against recording stand-ins;
tests/integration/slurm runs it against a real Slurm)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from edge.batch import SlurmBatchConfig
from edge.batch.port import BatchSubmitError
from edge.batch.script import WorkerRecord, new_worker
from edge.batch.slurm import SlurmBatch, parse_sbatch, parse_table, slurm_state
from tests.unit.edge.batch.conftest import FakeHpc


def job_dir(tmp_path: Path, job_id: str = "job-1") -> Path:
    path = tmp_path / "root" / "jobs" / job_id
    path.mkdir(parents=True)
    return path


def test_state_mapping() -> None:
    for running in ("PENDING", "RUNNING", "SUSPENDED", "REQUEUED", "CONFIGURING", "REQUEUE_HOLD"):
        assert slurm_state(running) == "running"
    for done in ("COMPLETED", "COMPLETING", "CANCELLED by 1000", "FAILED", "TIMEOUT", "NODE_FAIL"):
        assert slurm_state(done) == "done"
    assert slurm_state("OUT_OF_MEMORY") == "done"
    assert slurm_state("") == slurm_state("SOMETHING_NEW") == "unknown"


def test_parsers() -> None:
    assert parse_sbatch("4711\n") == "4711"
    assert parse_sbatch("4711;cluster-b\n") == "4711"
    assert parse_sbatch("Submitted batch job 4711\n") is None
    assert parse_sbatch("") is None
    assert parse_table("12|RUNNING\n13|COMPLETED\n\nbogus\n") == {
        "12": "RUNNING",
        "13": "COMPLETED",
    }
    assert parse_table("12|CANCELLED by 0\n12.batch|CANCELLED\n")["12"] == "CANCELLED by 0"


def test_directives(tmp_path: Path) -> None:
    config = SlurmBatchConfig(
        partition="gpu",
        account="proj1",
        walltime=timedelta(hours=26),
        nodes=2,
        gpus_per_node=4,
        directives=["--qos=high", "--constraint=a100&nvme"],
    )
    worker = new_worker(job_dir(tmp_path))
    lines = SlurmBatch(config).directives(worker)
    assert lines == [
        "--job-name=hpo-job-1",
        f"--output={worker.log}",
        f"--chdir={worker.dir}",
        "--nodes=2",
        "--partition=gpu",
        "--account=proj1",
        "--time=1-02:00:00",
        "--gres=gpu:4",
        "--no-requeue",
        "--qos=high",
        "--constraint=a100&nvme",
    ]
    assert "--requeue" in SlurmBatch(SlurmBatchConfig(requeue=True)).directives(worker)


def test_submit_poll_cancel_through_the_commands(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    batch = SlurmBatch(SlurmBatchConfig(partition="debug", gpus_per_node=1))
    first = batch.submit(job_dir(tmp_path, "job-1"))
    second = batch.submit(job_dir(tmp_path, "job-2"))
    (call,) = fake_hpc.calls("sbatch")[:1]
    assert call["argv"][0] == "--parsable"
    script = Path(call["argv"][1]).read_text()
    assert "#SBATCH --partition=debug" in script and "#SBATCH --gres=gpu:1" in script
    record = WorkerRecord.model_validate_json(
        (Path(call["argv"][1]).parent / "worker.json").read_text()
    )
    assert (record.kind, record.jobs, record.batch_id) == ("slurm", ["job-1"], first)

    ids = [first, second, "999"]
    assert batch.poll(ids) == {first: "running", second: "running", "999": "done"}
    (squeue,) = fake_hpc.calls("squeue")  # one query for every id
    assert f"--jobs={first},{second},999" in squeue["argv"]
    assert "--states=all" in squeue["argv"]

    fake_hpc.set_state(first, "RUNNING")
    fake_hpc.set_state(second, "COMPLETED")
    assert batch.poll(ids) == {first: "running", second: "done", "999": "done"}

    batch.cancel(first)
    assert fake_hpc.calls("scancel")[-1]["argv"] == [first]
    assert batch.poll([first]) == {first: "done"}
    batch.cancel(first)  # idempotent


def test_jobs_squeue_forgot_are_looked_up_in_accounting(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    batch = SlurmBatch(SlurmBatchConfig())
    a, b = batch.submit(job_dir(tmp_path, "job-1")), batch.submit(job_dir(tmp_path, "job-2"))
    fake_hpc.set_state(a, "RUNNING")
    fake_hpc.forget(a)  # e.g. a controller that lost its state, while accounting has it
    fake_hpc.set_state(b, "TIMEOUT")
    fake_hpc.forget(b)
    # accounting off: a job the controller does not know is over
    assert batch.poll([a, b]) == {a: "done", b: "done"}
    assert "--jobs=" + ",".join([a, b]) in fake_hpc.calls("sacct")[-1]["argv"]
    fake_hpc.enable_accounting()
    assert batch.poll([a, b]) == {a: "running", b: "done"}
    assert len(fake_hpc.calls("sacct")) == 2  # once per poll, for all missing ids


def test_a_single_unknown_id_is_done_not_an_error(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    assert SlurmBatch(SlurmBatchConfig()).poll(["31337"]) == {"31337": "done"}


def test_malformed_ids_never_reach_squeue(fake_hpc: FakeHpc) -> None:
    batch = SlurmBatch(SlurmBatchConfig())
    assert batch.poll(["1234:5678", "--all"]) == {"1234:5678": "done", "--all": "done"}
    batch.cancel("--all")
    assert fake_hpc.calls() == []


def test_an_unreachable_controller_answers_unknown(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    batch = SlurmBatch(SlurmBatchConfig())
    bid = batch.submit(job_dir(tmp_path))
    fake_hpc.fail(
        "squeue", 1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    )
    assert batch.poll([bid]) == {bid: "unknown"}
    assert fake_hpc.calls("sacct") == []


def test_missing_tools_answer_unknown_and_refuse_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    batch = SlurmBatch(SlurmBatchConfig())
    assert batch.poll(["12"]) == {"12": "unknown"}
    with pytest.raises(BatchSubmitError, match="'sbatch' is not on PATH"):
        batch.submit(job_dir(tmp_path))


def test_a_refused_submission_carries_sbatch_stderr(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    message = "sbatch: error: Batch job submission failed: Invalid account or account/partition"
    fake_hpc.fail("sbatch", 1, message)
    with pytest.raises(BatchSubmitError, match="Invalid account or account/partition"):
        SlurmBatch(SlurmBatchConfig(account="nope")).submit(job_dir(tmp_path))
    (worker_json,) = (tmp_path / "root" / "workers").glob("*/worker.json")
    record = json.loads(worker_json.read_text())
    assert record["batch_id"] is None and "Invalid account" in record["error"]
