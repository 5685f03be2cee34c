"""Layouts 2-4 in the LSF, PBS and Slurm scripts, through their command-line contracts:
the directives the schedulers get, the launcher the agent is told to use, and the
rendered script run by bash with recording stand-ins of ``jsrun`` and ``mpirun`` that
start the real ``rank-env`` wrapper once per rank."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.batch import LsfBatchConfig, PbsBatchConfig, SlurmBatchConfig
from edge.batch.lsf import LsfBatch
from edge.batch.pbs import PbsBatch
from edge.batch.scheduled import ScheduledBatch
from edge.batch.script import new_worker
from edge.batch.slurm import SlurmBatch
from edge.config import SiteConfig
from edge.documents import NodeSettings, NodeStatus
from edge.harvester.staging import stage_job
from edge.node.layout import NodeLayout
from shared.edge_api import JobSpec
from tests.unit.edge.batch import fakelaunch
from tests.unit.edge.batch.conftest import FakeHpc

RECORD_RANK = (
    'printf "%s %s %s %s %s %s\\n" "$MASTER_ADDR" "$MASTER_PORT" "$WORLD_SIZE" "$RANK" '
    '"$LOCAL_RANK" "$NODE_RANK" > "rank-$RANK.txt"; '
    '[ "$RANK" != 0 ] || printf \'{"status": 0, "loss": 1}\' > output.json'
)


def job_dir(tmp_path: Path, job_id: str = "job-1") -> Path:
    path = tmp_path / "root" / "jobs" / job_id
    path.mkdir(parents=True)
    return path


def agent_layout(script: str) -> NodeLayout:
    """The layout the script's last line hands to the agent."""
    argv = shlex.split(script.splitlines()[-1])
    assert argv[argv.index("-m") + 1 : argv.index("-m") + 3] == ["edge.node", "run-job"]
    return NodeLayout.model_validate_json(argv[argv.index("--layout") + 1])


def test_layout_settings_that_cannot_work_are_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"whole_node.*set nodes = 1"):
        SlurmBatchConfig(layout="whole_node", nodes=2)
    with pytest.raises(ValidationError, match="payload_launcher"):
        LsfBatchConfig(layout="multi_node", launcher=["jsrun", "-n1"])
    with pytest.raises(ValidationError, match="tasks_per_node"):
        PbsBatchConfig(tasks_per_node=4)
    with pytest.raises(ValidationError, match="min_nodes"):
        SlurmBatchConfig(layout="elastic", nodes=2, min_nodes=3)
    with pytest.raises(ValidationError, match="layout"):
        SlurmBatchConfig(layout="per_node")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="isolate_network cannot be used"):
        SiteConfig.model_validate(
            {
                "site": "s",
                "api_url": "https://api.example.org",
                "token": "t",
                "root": str(tmp_path),
                "isolate_network": True,
                "batch": {"kind": "slurm", "layout": "multi_node", "nodes": 2},
            }
        )
    with pytest.raises(ValueError, match="isolate_network cannot be used"):
        PbsBatch(PbsBatchConfig(layout="elastic"), isolate_network=True)


def test_single_is_the_default_and_adds_nothing(tmp_path: Path) -> None:
    script = SlurmBatch(SlurmBatchConfig()).render(new_worker(job_dir(tmp_path)))
    assert "--layout" not in script and "--exclusive" not in script


def test_slurm_directives_and_launchers(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    multi = SlurmBatch(SlurmBatchConfig(layout="multi_node", nodes=3, tasks_per_node=4))
    multi.submit(job_dir(tmp_path, "job-1"))
    script = Path(fake_hpc.calls("sbatch")[-1]["argv"][-1]).read_text()
    assert {"#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=4"} <= set(script.splitlines())
    layout = agent_layout(script)
    assert (layout.kind, layout.nodes, layout.tasks_per_node) == ("multi_node", 3, 4)
    assert layout.launcher == [
        "srun",
        "--nodes=3",
        "--ntasks=12",
        "--ntasks-per-node=4",
        "--kill-on-bad-exit=1",
    ]
    elastic = SlurmBatch(SlurmBatchConfig(layout="elastic", nodes=4, min_nodes=2, tasks_per_node=8))
    script = elastic.render(new_worker(job_dir(tmp_path, "job-2")))
    assert {"#SBATCH --nodes=2-4", "#SBATCH --ntasks-per-node=1"} <= set(script.splitlines())
    layout = agent_layout(script)
    assert layout.launcher == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert (layout.min_nodes, layout.nodes, layout.tasks_per_node) == (2, 4, 8)
    whole = SlurmBatch(SlurmBatchConfig(layout="whole_node", gpus_per_node=4))
    script = whole.render(new_worker(job_dir(tmp_path, "job-3")))
    assert {"#SBATCH --exclusive", "#SBATCH --gres=gpu:4"} <= set(script.splitlines())
    assert agent_layout(script).gpus_per_node == 4


def test_lsf_power9_whole_node_and_multi_node(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    whole = LsfBatch(
        LsfBatchConfig(
            layout="whole_node",
            whole_nodes=True,
            gpus_per_node=6,
            launcher=["jsrun", "-n1", "-a1", "-c42", "-g6"],
        )
    )
    whole.submit(job_dir(tmp_path, "job-1"))
    script = fake_hpc.calls("bsub")[-1]["stdin"]
    assert "#BSUB -nnodes 1" in script.splitlines()
    assert shlex.split(script.splitlines()[-1])[:6] == [
        "exec",
        "jsrun",
        "-n1",
        "-a1",
        "-c42",
        "-g6",
    ]
    assert agent_layout(script).kind == "whole_node"

    multi = LsfBatch(
        LsfBatchConfig(
            layout="multi_node", whole_nodes=True, nodes=2, tasks_per_node=6, gpus_per_node=6
        )
    )
    multi.submit(job_dir(tmp_path, "job-2"))
    script = fake_hpc.calls("bsub")[-1]["stdin"]
    assert "#BSUB -nnodes 2" in script.splitlines()
    layout = agent_layout(script)
    assert layout.skip_first_host  # the batch node comes first in LSB_MCPU_HOSTS
    assert layout.launcher == [
        "jsrun",
        "--nrs=2",
        "--rs_per_host=1",
        "--tasks_per_rs=6",
        "--cpu_per_rs=ALL_CPUS",
        "--gpu_per_rs=ALL_GPUS",
    ]
    slots = LsfBatch(LsfBatchConfig(layout="multi_node", nodes=2, tasks_per_node=4))
    lines = slots.directives(new_worker(job_dir(tmp_path, "job-3")))
    assert "-n 8" in lines and '-R "span[ptile=4]"' in lines
    exclusive = LsfBatch(LsfBatchConfig(layout="whole_node", gpus_per_node=4))
    assert "-x" in exclusive.directives(new_worker(job_dir(tmp_path, "job-4")))


def test_pbs_directives_and_mpirun(tmp_path: Path, fake_hpc: FakeHpc) -> None:
    multi = PbsBatch(
        PbsBatchConfig(layout="multi_node", nodes=2, tasks_per_node=4, gpus_per_node=4)
    )
    multi.submit(job_dir(tmp_path, "job-1"))
    script = Path(fake_hpc.calls("qsub")[-1]["argv"][-1]).read_text()
    lines = script.splitlines()
    assert {"#PBS -l select=2:ngpus=4:mpiprocs=4", "#PBS -l place=scatter"} <= set(lines)
    assert agent_layout(script).launcher == ["mpirun", "-n", "8", "-ppn", "4"]
    torque = PbsBatch(PbsBatchConfig(layout="elastic", nodes=2, resources="nodes"))
    assert "-l nodes=2:ppn=1" in torque.directives(new_worker(job_dir(tmp_path, "job-2")))
    whole = PbsBatch(PbsBatchConfig(layout="whole_node", gpus_per_node=8))
    assert "-l place=excl" in whole.directives(new_worker(job_dir(tmp_path, "job-3")))
    own = PbsBatch(
        PbsBatchConfig(
            layout="multi_node",
            nodes=2,
            tasks_per_node=4,
            payload_launcher=["mpirun", "-np", "8", "--map-by", "ppr:4:node"],
        )
    )
    script = own.render(new_worker(job_dir(tmp_path, "job-4")))
    assert agent_layout(script).launcher == ["mpirun", "-np", "8", "--map-by", "ppr:4:node"]


@pytest.fixture
def fake_launchers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "fake-launch"
    bin_dir = state / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("jsrun", "mpirun"):
        wrapper = bin_dir / tool
        wrapper.write_text(
            f"#!{sys.executable}\nimport runpy\n"
            f"runpy.run_path({fakelaunch.__file__!r}, {{'TOOL': {tool!r}}}, run_name='__main__')\n"
        )
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_LAUNCH_DIR", str(state))
    return state


def run_script(batch: ScheduledBatch, job: Path, env: dict[str, str]) -> NodeStatus:
    worker = new_worker(job)
    worker.script.write_text(batch.render(worker))
    done = subprocess.run(
        ["bash", str(worker.script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    log = (job / "agent.log").read_text() + (job / "payload.log").read_text()
    assert done.returncode == 0, (done.stderr, log)
    return NodeStatus.model_validate_json((job / "status.json").read_text())


def ranks_seen(job: Path, size: int) -> list[list[str]]:
    return [(job / "work" / f"rank-{r}.txt").read_text().split() for r in range(size)]


LAUNCHES: dict[str, tuple[Callable[[], ScheduledBatch], Callable[[Path], dict[str, str]]]] = {
    "lsf-csm-jsrun": (
        lambda: LsfBatch(
            LsfBatchConfig(layout="multi_node", whole_nodes=True, nodes=2, tasks_per_node=2)
        ),
        lambda _: {"LSB_MCPU_HOSTS": "batch3 1 nodeA 42 nodeB 42", "LSB_JOBID": "77"},
    ),
    "pbs-mpirun": (
        lambda: PbsBatch(PbsBatchConfig(layout="multi_node", nodes=2, tasks_per_node=2)),
        lambda tmp: {"PBS_NODEFILE": str(tmp / "nodefile"), "PBS_JOBID": "77.srv"},
    ),
}


@pytest.mark.parametrize("name", sorted(LAUNCHES))
def test_the_script_starts_every_rank_with_its_variables(
    name: str, tmp_path: Path, fake_launchers: Path, make_spec: Callable[..., JobSpec]
) -> None:
    (tmp_path / "nodefile").write_text("nodeA\nnodeA\nnodeB\nnodeB\n")  # mpiprocs=2
    paths, _ = stage_job(
        tmp_path / "root", make_spec(RECORD_RANK), NodeSettings(heartbeat_interval=0.2)
    )
    make_batch, scheduler_env = LAUNCHES[name]
    status = run_script(make_batch(), paths.dir, scheduler_env(tmp_path))
    assert status.state == "finished"
    seen = ranks_seen(paths.dir, 4)
    port = seen[0][1]
    assert 1024 <= int(port) <= 65535
    # MASTER_ADDR is the first compute node (not LSF's batch node); ranks packed by node
    assert seen == [
        ["nodeA", port, "4", "0", "0", "0"],
        ["nodeA", port, "4", "1", "1", "0"],
        ["nodeA", port, "4", "2", "0", "1"],
        ["nodeA", port, "4", "3", "1", "1"],
    ]
    (call,) = [
        json.loads(line) for line in (fake_launchers / "launch.jsonl").read_text().splitlines()
    ]
    assert "rank-env" in call["argv"]
    assert (paths.dir / "points" / "0" / "output.json").exists()


def test_a_rank_that_cannot_be_placed_fails_the_job_with_the_reason(
    tmp_path: Path, fake_launchers: Path, make_spec: Callable[..., JobSpec]
) -> None:
    paths, _ = stage_job(
        tmp_path / "root", make_spec(RECORD_RANK), NodeSettings(heartbeat_interval=0.2)
    )
    batch = PbsBatch(PbsBatchConfig(layout="multi_node", nodes=2, tasks_per_node=2))
    worker = new_worker(paths.dir)
    worker.script.write_text(batch.render(worker))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PBS_", "LSB_", "SLURM_"))}
    subprocess.run(["bash", str(worker.script)], env=env, timeout=60, check=False)
    status = NodeStatus.model_validate_json(paths.status.read_text())
    assert status.state == "failed" and status.exit_code == 127
    assert "no host list: none of PBS_NODEFILE" in paths.payload_log.read_text()
