"""The Grid Engine adapter through recording stand-ins of qsub, qstat and qdel, in the
formats the real Grid Engine 8.1.9 of deploy/dev/sge.py answers (fakehpc.py lists them;
tests/integration/sge/ runs the same adapter against that real cell)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.batch import SgeBatchConfig, open_batch
from edge.batch.port import BatchSubmitError
from edge.batch.script import new_worker
from edge.batch.sge import SgeBatch, parse_qstat_xml, parse_qsub_terse, sge_state
from edge.config import SiteConfig
from tests.unit.edge.batch.conftest import FakeHpc

QSTAT_XML = """\
<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>2</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>s.sh</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-12-02T15:03:47</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>s.sh</JB_name>
      <JB_owner>root</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-12-02T15:03:48</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>
"""


def job_dir(tmp_path: Path, job_id: str = "job-1") -> Path:
    path = tmp_path / "root" / "jobs" / job_id
    path.mkdir(parents=True)
    return path


def test_state_mapping_and_parsers() -> None:
    """Real qstat -xml output, captured from the dev cell."""
    for running in ("qw", "hqw", "r", "t", "Rr", "Rq", "s", "S", "T", "dr", "dt"):
        assert sge_state(running) == "running", running
    for never_runs in ("Eqw", "Ehqw"):
        assert sge_state(never_runs) == "done"
    assert sge_state("") == sge_state("z") == "unknown"
    assert parse_qstat_xml(QSTAT_XML) == {"2": "r", "3": "hqw"}
    assert parse_qstat_xml("error: commlib error: got select error (Connection refused)") is None
    assert parse_qsub_terse("42\n") == "42"
    assert parse_qsub_terse("43.1-10:1\n") == "43"  # an array job
    assert parse_qsub_terse('Unable to run job: unknown resource "gpux"\n') is None


def test_directives(tmp_path: Path) -> None:
    worker = new_worker(job_dir(tmp_path))
    config = SgeBatchConfig(
        queue="gpu.q",
        account="p1",
        walltime=timedelta(hours=30, seconds=1),
        gpus_per_node=2,
        directives=["-l mem_free=8G"],
    )
    assert SgeBatch(config).directives(worker) == [
        "-N hpo-job-1",
        f"-o {worker.log}",
        "-j y",
        "-S /bin/bash",
        "-q gpu.q",
        "-A p1",
        "-l h_rt=30:00:01",
        "-l gpu=2",
        "-r n",
        "-l mem_free=8G",
    ]
    whole = SgeBatch(SgeBatchConfig(layout="whole_node", gpus_per_node=4, requeue=True))
    lines = whole.directives(worker)
    assert "-l exclusive=true" in lines and "-r y" in lines and "-l gpu=4" in lines


def test_layouts_it_cannot_express_are_refused_when_the_config_is_read() -> None:
    for layout in ("multi_node", "elastic"):
        with pytest.raises(ValidationError, match="not supported with Grid Engine"):
            SgeBatchConfig(layout=layout, nodes=2)
    with pytest.raises(ValidationError, match="nodes = 1"):
        SgeBatchConfig(nodes=2)
    site = SiteConfig.model_validate(
        {
            "site": "sge-site",
            "api_url": "https://hpo.example.org",
            "token": "t",
            "root": "/r",
            "batch": {"kind": "sge", "layout": "per_gpu", "gpus_per_node": 2, "queue": "gpu.q"},
            "slots": 2,
        }
    )
    assert isinstance(site.batch, SgeBatchConfig)


def test_submit_poll_cancel_through_the_commands(tmp_path: Path, fake_sge: FakeHpc) -> None:
    batch = open_batch(SgeBatchConfig(queue="all.q", gpus_per_node=1))
    first = batch.submit(job_dir(tmp_path, "job-1"))
    second = batch.submit(job_dir(tmp_path, "job-2"))
    call = fake_sge.calls("qsub")[0]
    assert call["argv"][:1] == ["-terse"]
    script = Path(call["argv"][-1]).read_text()
    for line in ("#$ -N hpo-job-1", "#$ -q all.q", "#$ -j y", "#$ -l gpu=1", "#$ -r n"):
        assert line in script.splitlines()
    assert "batch job ${JOB_ID:-?}" in script

    ids = [first, second]
    assert batch.poll(ids) == {first: "running", second: "running"}  # qw
    (qstat,) = fake_sge.calls("qstat")  # one query for every id
    assert qstat["argv"] == ["-u", "*", "-xml"]

    fake_sge.set_state(first, "r")
    fake_sge.set_state(second, "Eqw")  # an execution host could not start it
    assert batch.poll(ids) == {first: "running", second: "done"}

    batch.cancel(first)
    assert fake_sge.calls("qdel")[-1]["argv"] == [first]
    assert batch.poll(ids) == {first: "done", second: "done"}  # no longer listed
    batch.cancel(first)  # 'denied: job "N" does not exist': logged, not raised
    assert batch.poll(["nonsense", first]) == {"nonsense": "done", first: "done"}
    assert len(fake_sge.calls("qstat")) == 4


def test_a_master_that_does_not_answer_is_unknown(tmp_path: Path, fake_sge: FakeHpc) -> None:
    batch = SgeBatch(SgeBatchConfig())
    bid = batch.submit(job_dir(tmp_path))
    fake_sge.fail(
        "qstat",
        1,
        "error: commlib error: got select error (Connection refused)\nunable to contact "
        'qmaster using port 6444 on host "vm"',
    )
    assert batch.poll([bid]) == {bid: "unknown"}


def test_a_refused_submission_carries_qsub_message(tmp_path: Path, fake_sge: FakeHpc) -> None:
    batch = SgeBatch(SgeBatchConfig(directives=["-l gpux=1"]))
    with pytest.raises(BatchSubmitError, match='unknown resource "gpux"'):
        batch.submit(job_dir(tmp_path))
