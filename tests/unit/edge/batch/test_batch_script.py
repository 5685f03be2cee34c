"""The batch script every scheduler adapter writes: directives, quoting, and a body that
really starts the node agent (run here with bash, with no scheduler around)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.batch import (
    LsfBatchConfig,
    PbsBatchConfig,
    SgeBatchConfig,
    SlurmBatchConfig,
    open_batch,
)
from edge.batch.lsf import LsfBatch, lsf_walltime
from edge.batch.pbs import PbsBatch
from edge.batch.port import BatchSubmitError
from edge.batch.scheduled import ScheduledBatch
from edge.batch.script import (
    ScriptSettings,
    UnsafeDirectiveError,
    Worker,
    directive_value,
    format_hms,
    new_worker,
    render_script,
)
from edge.batch.sge import SgeBatch
from edge.batch.slurm import SlurmBatch, slurm_time
from edge.config import load_site_config
from edge.documents import NodeSettings, NodeStatus
from edge.harvester.staging import stage_job
from shared.edge_api import JobSpec

WRITE_OUTPUT = 'printf \'{"status": 0, "loss": 0.25}\' > output.json\n'


def test_directive_values_are_quoted_or_refused() -> None:
    assert directive_value("gpu", "partition") == "gpu"
    assert directive_value(Path("/a b/c"), "path") == '"/a b/c"'
    assert directive_value("/x/$HOME;y", "path") == "/x/$HOME;y"  # no shell reads it
    for bad in ('a"b', "it's", "a\\b", "log-%j", "a\nb", ""):
        with pytest.raises(UnsafeDirectiveError):
            directive_value(bad, "value")


def test_config_rejects_typos_odd_names_and_multi_line_entries() -> None:
    with pytest.raises(ValidationError, match="partiton"):
        SlurmBatchConfig.model_validate({"partiton": "gpu"})
    for bad in ({"partition": "gpu a"}, {"account": 'x"'}, {"queue": "q#1"}):
        with pytest.raises(ValidationError):
            LsfBatchConfig.model_validate(bad)
    with pytest.raises(ValidationError, match="one entry per line"):
        PbsBatchConfig(setup=["module load a\nmodule load b"])
    with pytest.raises(ValidationError, match="positive"):
        SlurmBatchConfig.model_validate({"walltime": 0})
    with pytest.raises(ValidationError):
        SlurmBatchConfig(shell="bash")


def test_site_config_selects_the_adapter_by_kind(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        'site = "hpc-a"\napi_url = "https://hpo.example.org"\ntoken = "t"\nroot = "edge"\n'
        "[batch]\n"
        'kind = "slurm"\npartition = "gpu"\naccount = "proj1"\nwalltime = "02:00:00"\n'
        "gpus_per_node = 4\n"
        'directives = ["--qos=high"]\nsetup = ["module load cuda/12"]\n'
        'python = "/gpfs/venv/bin/python"\n'
    )
    config = load_site_config(site)
    assert isinstance(config.batch, SlurmBatchConfig)
    assert config.batch.walltime == timedelta(hours=2)
    assert isinstance(open_batch(config.batch), SlurmBatch)
    site.write_text(site.read_text().replace('"slurm"', '"condor"'))
    with pytest.raises(ValueError, match="'local', 'slurm', 'lsf', 'pbs', 'sge'"):
        load_site_config(site)


def test_walltime_formats() -> None:
    assert format_hms(timedelta(hours=30, seconds=0.5)) == "30:00:01"
    assert slurm_time(timedelta(minutes=90)) == "01:30:00"
    assert slurm_time(timedelta(days=2, seconds=5)) == "2-00:00:05"
    assert lsf_walltime(timedelta(minutes=90, seconds=1)) == "1:31"
    assert lsf_walltime(timedelta(seconds=10)) == "0:01"


def _worker(tmp_path: Path, root_name: str = "root") -> Worker:
    job_dir = tmp_path / root_name / "jobs" / "job-1"
    job_dir.mkdir(parents=True)
    return new_worker(job_dir)


def test_worker_directory_sits_under_the_edge_root(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    assert worker.dir.parent == tmp_path / "root" / "workers"
    assert worker.dir.is_dir() and worker.worker_id.startswith("w-")
    assert worker.name == "hpo-job-1"
    with pytest.raises(ValueError, match="not a job directory"):
        new_worker(tmp_path / "elsewhere")


def test_script_layout_setup_launcher_and_isolation(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    settings = ScriptSettings(
        shell="/bin/bash",
        directive_prefix="#SBATCH",
        job_id_variable="SLURM_JOB_ID",
        python="/opt/py thon/bin/python",
        setup=["module load cuda/12 # admin's line, verbatim"],
        launcher=["srun", "--ntasks=1"],
        pythonpath="/code dir",
        isolate_network=True,
    )
    text = render_script(settings, worker, ["--nodes=1", "--qos=high"])
    lines = text.splitlines()
    assert lines[:3] == ["#!/bin/bash", "#SBATCH --nodes=1", "#SBATCH --qos=high"]
    assert "module load cuda/12 # admin's line, verbatim" in lines
    assert "export PYTHONPATH='/code dir'\"${PYTHONPATH:+:$PYTHONPATH}\"" in lines
    assert lines[-1] == (
        "exec srun --ntasks=1 unshare -n '/opt/py thon/bin/python' -m edge.node run-job "
        f"{worker.job_dirs[0]}"
    )
    assert "if ! unshare -n true; then" in lines
    # set-up output lands in the job's agent.log, after the scheduler's own log starts
    redirect = next(i for i, line in enumerate(lines) if line.startswith("exec >>"))
    assert redirect < lines.index("module load cuda/12 # admin's line, verbatim")
    assert subprocess.run(["bash", "-n"], input=text, text=True, check=False).returncode == 0


def test_several_jobs_per_worker_wait_for_the_slot_layouts(tmp_path: Path) -> None:
    worker = _worker(tmp_path)
    two = Worker(worker.worker_id, worker.dir, (*worker.job_dirs, worker.job_dirs[0]))
    settings = ScriptSettings("/bin/bash", "#PBS", "PBS_JOBID", "python3")
    with pytest.raises(ValueError, match="exactly one job"):
        render_script(settings, two, [])


ADAPTERS: dict[str, Callable[[], ScheduledBatch]] = {
    "slurm": lambda: SlurmBatch(SlurmBatchConfig(gpus_per_node=1, walltime=timedelta(hours=1))),
    "lsf": lambda: LsfBatch(LsfBatchConfig(queue="normal", setup=["echo set-up ran"])),
    "pbs": lambda: PbsBatch(PbsBatchConfig(account="p1", nodes=2)),
    "sge": lambda: SgeBatch(SgeBatchConfig(queue="all.q", gpus_per_node=1)),
}


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
def test_the_script_runs_the_real_agent_on_an_awkward_root(
    kind: str, tmp_path: Path, make_spec: Callable[..., JobSpec]
) -> None:
    """Run by bash as a scheduler would (directives are comments then): the agent runs
    the job, whatever the shell-special characters in the edge root's path."""
    root = tmp_path / "edge root $HOME;`x` & (y)"
    spec = make_spec("sh ./run.sh", task_files={"run.sh": WRITE_OUTPUT})
    paths, _ = stage_job(root, spec, NodeSettings(heartbeat_interval=0.2))
    batch = ADAPTERS[kind]()
    worker = new_worker(paths.dir)
    script = batch.render(worker)
    worker.script.write_text(script)
    done = subprocess.run(["bash", str(worker.script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.stdout, done.stderr, paths.agent_log.read_text())
    status = NodeStatus.model_validate_json(paths.status.read_text())
    assert status.state == "finished"
    assert (paths.point_dir(0) / "output.json").exists()
    agent_log = paths.agent_log.read_text()
    assert f"hpo-relay: worker {worker.worker_id} on " in agent_log


def test_a_root_no_directive_can_carry_is_a_clear_submit_error(tmp_path: Path) -> None:
    job_dir = tmp_path / "it's" / "jobs" / "job-1"
    job_dir.mkdir(parents=True)
    with pytest.raises(BatchSubmitError, match=r"batch log path .* cannot be written"):
        SlurmBatch(SlurmBatchConfig()).submit(job_dir)
