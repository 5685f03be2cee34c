"""The LSF adapter, contract-tested through recording stand-ins of bsub, bjobs and bkill
(fakehpc.py documents the emulated output formats)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from edge.batch import LsfBatchConfig, open_batch
from edge.batch.lsf import LsfBatch, lsf_state, parse_bjobs, parse_bsub
from edge.batch.port import BatchSubmitError
from edge.batch.script import new_worker
from tests.unit.edge.batch.conftest import FakeHpc


def job_dir(tmp_path: Path, job_id: str = "job-1") -> Path:
    path = tmp_path / "root" / "jobs" / job_id
    path.mkdir(parents=True)
    return path


def test_state_mapping_and_parsers() -> None:
    for running in ("PEND", "RUN", "PSUSP", "USUSP", "SSUSP", "WAIT", "PROV"):
        assert lsf_state(running) == "running"
    assert lsf_state("DONE") == lsf_state("EXIT") == "done"
    assert lsf_state("UNKWN") == lsf_state("ZOMBI") == "unknown"
    assert parse_bsub("Job <5521> is submitted to default queue <normal>.\n") == "5521"
    assert parse_bsub("Job <17> is submitted to queue <batch>.") == "17"
    assert parse_bsub("Project not specified. Job not submitted.") is None
    assert parse_bjobs("5521 RUN\n5522   PEND\nJOBID STAT\n") == {"5521": "RUN", "5522": "PEND"}


def test_directives_for_slot_clusters(tmp_path: Path) -> None:
    worker = new_worker(job_dir(tmp_path))
    config = LsfBatchConfig(
        queue="gpu",
        account="PROJ01",
        walltime=timedelta(hours=2, minutes=30),
        nodes=2,
        gpus_per_node=4,
        directives=['-alloc_flags "smt4"'],
    )
    assert LsfBatch(config).directives(worker) == [
        "-J hpo-job-1",
        f"-o {worker.log}",
        f"-cwd {worker.dir}",
        "-q gpu",
        "-P PROJ01",
        "-W 2:30",
        "-n 2",
        '-R "span[ptile=1]"',
        '-gpu "num=4"',
        "-rn",
        '-alloc_flags "smt4"',
    ]


def test_directives_and_jsrun_launcher_on_csm_machines(tmp_path: Path) -> None:
    worker = new_worker(job_dir(tmp_path))
    config = LsfBatchConfig(
        whole_nodes=True,
        nodes=1,
        gpus_per_node=6,
        requeue=True,
        launcher=["jsrun", "-n1", "-a1", "-c42", "-g6"],
        python="/gpfs/venv/bin/python",
    )
    batch = LsfBatch(config)
    lines = batch.directives(worker)
    assert "-nnodes 1" in lines and "-r" in lines
    assert not any(line.startswith(("-gpu", "-n ")) for line in lines)
    agent = f"/gpfs/venv/bin/python -m edge.node run-job {worker.job_dirs[0]}"
    assert batch.render(worker).splitlines()[-1] == f"exec jsrun -n1 -a1 -c42 -g6 {agent}"


def test_submit_poll_cancel_through_the_commands(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    batch = open_batch(LsfBatchConfig(queue="batch", account="PROJ01", gpus_per_node=1))
    first = batch.submit(job_dir(tmp_path, "job-1"))
    second = batch.submit(job_dir(tmp_path, "job-2"))
    call = fake_hpc.calls("bsub")[0]
    assert call["argv"] == []  # the script comes on stdin: bsub < batch.sh
    script = call["stdin"]
    for line in ("#BSUB -J hpo-job-1", "#BSUB -q batch", "#BSUB -P PROJ01", '#BSUB -gpu "num=1"'):
        assert line in script.splitlines()
    assert script.splitlines()[-1].endswith("run-job " + str(tmp_path / "root" / "jobs" / "job-1"))
    assert fake_hpc.jobs()[first]["queue"] == "batch"

    ids = [first, second]
    assert batch.poll(ids) == {first: "running", second: "running"}  # PEND
    (bjobs,) = fake_hpc.calls("bjobs")  # one query for every id
    assert bjobs["argv"] == ["-a", "-noheader", "-o", "jobid stat", first, second]

    fake_hpc.set_state(first, "RUN")
    fake_hpc.set_state(second, "DONE")
    assert batch.poll(ids) == {first: "running", second: "done"}

    batch.cancel(first)
    assert fake_hpc.calls("bkill")[-1]["argv"] == [first]
    assert batch.poll(ids) == {first: "done", second: "done"}  # EXIT
    batch.cancel(first)  # "Job has already finished": logged, not raised

    fake_hpc.forget(second)  # cleaned after CLEAN_PERIOD: "Job <id> is not found"
    assert batch.poll([*ids, "77"]) == {first: "done", second: "done", "77": "done"}


def test_an_lsf_that_does_not_answer_is_unknown(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    batch = LsfBatch(LsfBatchConfig())
    bid = batch.submit(job_dir(tmp_path))
    fake_hpc.fail("bjobs", 255, "LSF is down. Please wait ...\nbatch system daemon not responding")
    assert batch.poll([bid, "bogus id"]) == {bid: "unknown", "bogus id": "done"}


def test_a_refused_submission_carries_bsub_message(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    fake_hpc.fail("bsub", 255, "Project not specified. Job not submitted.")
    with pytest.raises(BatchSubmitError, match=r"bsub refused the job: .*Project not specified"):
        LsfBatch(LsfBatchConfig()).submit(job_dir(tmp_path))
