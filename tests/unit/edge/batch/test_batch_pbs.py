"""The PBS adapter, contract-tested through recording stand-ins of qsub, qstat and qdel
(fakehpc.py documents the emulated output formats)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from edge.batch import PbsBatchConfig, open_batch
from edge.batch.pbs import (
    PbsBatch,
    ended,
    parse_qstat_json,
    parse_qstat_plain,
    parse_qsub,
    pbs_state,
)
from edge.batch.port import BatchSubmitError
from edge.batch.script import new_worker
from tests.unit.edge.batch.conftest import FakeHpc

PLAIN = """\
Job id            Name             User              Time Use S Queue
----------------  ---------------- ----------------  -------- - -----
101.fakepbs       hpo-job-1        root              00:00:00 R workq
12345678901.very* hpo-job-2        root              00:00:00 Q workq
"""


def job_dir(tmp_path: Path, job_id: str = "job-1") -> Path:
    path = tmp_path / "root" / "jobs" / job_id
    path.mkdir(parents=True)
    return path


def test_state_mapping_and_parsers() -> None:
    for running in ("Q", "H", "W", "T", "S", "U", "R", "B"):
        assert pbs_state(running) == "running"
    for done in ("E", "F", "X", "C"):
        assert pbs_state(done) == "done"
    assert pbs_state("M") == "unknown"
    assert parse_qsub("4242.pbs01.example.org\n") == "4242.pbs01.example.org"
    assert parse_qsub("qsub: Unknown queue\n") is None
    assert parse_qstat_json('{"timestamp": 1, "Jobs": {"7.srv": {"job_state": "R"}}}') == {"7": "R"}
    assert parse_qstat_json('{"timestamp": 1, "pbs_server": "srv"}') == {}
    assert parse_qstat_json("Connection refused") is None
    assert parse_qstat_plain(PLAIN) == {"101": "R", "12345678901": "Q"}
    assert ended(
        "qstat: Unknown Job Id 9.srv\n"
        "qstat: 10.srv Job has finished, use -x or -H to obtain historical job information\n"
        "qstat: cannot connect to server srv (errno=111)\n"
    ) == {"9", "10"}


def test_directives_select_and_torque_nodes(tmp_path: Path) -> None:
    worker = new_worker(job_dir(tmp_path))
    config = PbsBatchConfig(
        queue="gpu",
        account="p1",
        walltime=timedelta(hours=30),
        nodes=2,
        gpus_per_node=4,
        directives=["-l filesystems=home:grand"],
    )
    assert PbsBatch(config).directives(worker) == [
        "-N hpo-job-1",
        f"-o {worker.log}",
        "-j oe",
        "-S /bin/bash",
        "-q gpu",
        "-A p1",
        "-l walltime=30:00:00",
        "-l select=2:ngpus=4",
        "-l place=scatter",
        "-r n",
        "-l filesystems=home:grand",
    ]
    torque = PbsBatch(PbsBatchConfig(resources="nodes", gpus_per_node=2, requeue=True))
    lines = torque.directives(worker)
    assert "-l nodes=1:gpus=2" in lines and "-r y" in lines


@pytest.mark.parametrize("qstat_format", ["json", "plain"])
def test_submit_poll_cancel_through_the_commands(
    qstat_format: str, tmp_path: Path, fake_hpc: FakeHpc
) -> None:
    batch = open_batch(PbsBatchConfig(queue="workq", qstat_format=qstat_format))
    first = batch.submit(job_dir(tmp_path, "job-1"))
    second = batch.submit(job_dir(tmp_path, "job-2"))
    assert first.endswith(".fakepbs")
    call = fake_hpc.calls("qsub")[0]
    script = Path(call["argv"][-1]).read_text()
    for line in ("#PBS -N hpo-job-1", "#PBS -q workq", "#PBS -j oe", "#PBS -r n"):
        assert line in script.splitlines()

    ids = [first, second]
    assert batch.poll(ids) == {first: "running", second: "running"}  # Q
    (qstat,) = fake_hpc.calls("qstat")  # one query for every id
    expected = ["-f", "-F", "json", *ids] if qstat_format == "json" else ids
    assert qstat["argv"] == expected

    fake_hpc.set_state(first, "R")
    fake_hpc.set_state(second, "F")  # "Job has finished" on stderr
    assert batch.poll(ids) == {first: "running", second: "done"}

    batch.cancel(first)
    assert fake_hpc.calls("qdel")[-1]["argv"] == [first]
    assert batch.poll(ids) == {first: "done", second: "done"}  # E, exiting
    fake_hpc.set_state(first, "F")
    batch.cancel(first)  # "qdel: Job has finished": logged, not raised

    fake_hpc.forget(first)  # history gone: "Unknown Job Id"
    assert batch.poll([first, "555.fakepbs"]) == {first: "done", "555.fakepbs": "done"}


def test_a_server_that_does_not_answer_is_unknown(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    batch = PbsBatch(PbsBatchConfig())
    bid = batch.submit(job_dir(tmp_path))
    fake_hpc.fail(
        "qstat", 2, "Connection refused\nqstat: cannot connect to server fakepbs (errno=111)"
    )
    assert batch.poll([bid]) == {bid: "unknown"}


def test_ids_json_does_not_mention_stay_unknown(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    """An answer that lists neither the job nor an error about it proves nothing."""
    batch = PbsBatch(PbsBatchConfig())
    bid = batch.submit(job_dir(tmp_path))
    empty = json.dumps({"timestamp": 1, "pbs_version": "23.06.06", "pbs_server": "fakepbs"})
    qstat = fake_hpc.dir / "bin" / "qstat"
    qstat.write_text(f"#!/bin/sh\necho '{empty}'\n")
    assert batch.poll([bid]) == {bid: "unknown"}


def test_a_refused_submission_carries_qsub_message(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    fake_hpc.fail("qsub", 168, "qsub: Unknown queue")
    with pytest.raises(
        BatchSubmitError, match="qsub refused the job: qsub exited 168: qsub: Unknown"
    ):
        PbsBatch(PbsBatchConfig(queue="nope")).submit(job_dir(tmp_path))
