"""Rank mapping from each launcher's own variables, and the launch a rank gets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from edge.documents import JobDocument, NodeSettings
from edge.fsproto import JobPaths
from edge.node.layout import NodeLayout, derived_port, whole_node_gpus
from edge.node.rank_env import rank_launch
from edge.node.ranks import RankEnvError, RankInfo, expand_hostlist, rank_info
from shared.edge_api import JobSpec
from shared.runtime import ApptainerRuntimeConfig


def no_file(path: str) -> str:
    raise AssertionError(f"read {path}")


def test_slurm_host_lists_expand_without_asking_the_controller() -> None:
    assert expand_hostlist("vm") == ["vm"]
    assert expand_hostlist("node[01-03,07],gpu5") == [
        "node01",
        "node02",
        "node03",
        "node07",
        "gpu5",
    ]
    assert expand_hostlist("r[1-2]n[8-9]") == ["r1n8", "r1n9", "r2n8", "r2n9"]
    with pytest.raises(RankEnvError, match="cannot read the Slurm host list"):
        expand_hostlist("node[a-b]")


def test_srun_variables() -> None:
    env = {
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "2",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NODELIST": "gpu[10-13]",
        "SLURM_STEP_NODELIST": "gpu[11-13]",
    }
    info = rank_info(env, hostname="gpu13", read_file=no_file)
    assert info == RankInfo("srun", 5, 1, 8, 2, "gpu11")
    assert info.env(23456) == {
        "MASTER_ADDR": "gpu11",
        "MASTER_PORT": "23456",
        "WORLD_SIZE": "8",
        "RANK": "5",
        "LOCAL_RANK": "1",
        "NODE_RANK": "2",
    }
    del env["SLURM_STEP_NODELIST"]
    assert rank_info(env, hostname="x", read_file=no_file).master_addr == "gpu10"
    del env["SLURM_LOCALID"]
    with pytest.raises(RankEnvError, match="SLURM_LOCALID is not set: srun"):
        rank_info(env, hostname="x", read_file=no_file)


def test_jsrun_variables_on_a_csm_machine_skip_the_launch_node() -> None:
    env = {
        "JSM_NAMESPACE_RANK": "7",
        "JSM_NAMESPACE_SIZE": "12",
        "JSM_NAMESPACE_LOCAL_RANK": "1",
        "JSM_NAMESPACE_LOCAL_SIZE": "6",
        "LSB_MCPU_HOSTS": "batch2 1 a01n05 42 a01n06 42",
    }
    info = rank_info(env, hostname="a01n06.summit.example", read_file=no_file, skip_first_host=True)
    assert info == RankInfo("jsrun", 7, 1, 12, 1, "a01n05")
    # LSB_HOSTS lists a host per slot; names unknown to the list fall back to rank // local size
    env2 = {**env, "LSB_HOSTS": "h1 h1 h2 h2"}
    del env2["LSB_MCPU_HOSTS"]
    assert rank_info(env2, hostname="other", read_file=no_file) == RankInfo(
        "jsrun", 7, 1, 12, 1, "h1"
    )


def test_mpirun_variables_with_the_pbs_nodefile() -> None:
    files = {"/pbs/nodefile": "n1\nn1\nn2\nn2\nn3\nn3\n"}
    env = {
        "OMPI_COMM_WORLD_RANK": "4",
        "OMPI_COMM_WORLD_SIZE": "6",
        "OMPI_COMM_WORLD_LOCAL_RANK": "0",
        "PBS_NODEFILE": "/pbs/nodefile",
        "SLURM_PROCID": "0",  # left over from an enclosing Slurm batch step: ignored
    }
    assert rank_info(env, hostname="n3", read_file=files.__getitem__) == RankInfo(
        "Open MPI", 4, 0, 6, 2, "n1"
    )
    pmi = {
        "PMI_RANK": "3",
        "PMI_SIZE": "6",
        "PALS_LOCAL_RANKID": "1",
        "PBS_NODEFILE": "/pbs/nodefile",
    }
    assert rank_info(pmi, hostname="n2", read_file=files.__getitem__).node_rank == 1
    with pytest.raises(RankEnvError, match=r"host 'zz' is not in the job's host list"):
        rank_info(pmi, hostname="zz", read_file=files.__getitem__)
    with pytest.raises(RankEnvError, match="cannot read PBS_NODEFILE"):
        rank_info({**pmi, "PBS_NODEFILE": "/gone"}, hostname="n2", read_file=open_file)
    with pytest.raises(RankEnvError, match="PMI_SIZE='x' is not a number"):
        rank_info({**pmi, "PMI_SIZE": "x"}, hostname="n2", read_file=files.__getitem__)


def open_file(path: str) -> str:
    return Path(path).read_text()


def test_a_process_no_launcher_started_is_refused() -> None:
    with pytest.raises(RankEnvError, match="not started by a known launcher"):
        rank_info({"LSB_HOSTS": "h1"}, hostname="h1", read_file=no_file)


def test_ports_and_whole_node_gpus() -> None:
    port = derived_port("job-1", 0)
    assert 20000 <= port < 32000 and port == derived_port("job-1", 0)
    assert {derived_port("job-1", i) for i in range(5)} != {port}
    assert whole_node_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, 8) == ["2", "3"]
    assert whole_node_gpus({}, 4) == ["0", "1", "2", "3"]
    assert whole_node_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, 0) is None


def test_a_rank_goes_through_the_runtime_with_its_variables(
    tmp_path: Path, make_spec: Callable[..., JobSpec]
) -> None:
    node = NodeSettings(runtime=ApptainerRuntimeConfig(), image="/sif/train.sif")
    doc = JobDocument(spec=make_spec("python train.py", env={"A": "1"}), node=node)
    paths = JobPaths(tmp_path / "jobs" / "job-1")
    info = RankInfo("srun", 1, 1, 2, 0, "vm")
    environ = {"CUDA_VISIBLE_DEVICES": "0,1"}
    layout = NodeLayout(kind="multi_node", tasks_per_node=2)
    launch = rank_launch(
        doc, paths, layout, info, master_port=21000, rdzv_id="job-1-0", environ=environ
    )
    assert launch.argv[:2] == ["apptainer", "exec"] and "--nv" in launch.argv
    assert launch.env["APPTAINERENV_RANK"] == "1"
    assert launch.env["APPTAINERENV_MASTER_ADDR"] == "vm"
    assert launch.env["APPTAINERENV_CUDA_VISIBLE_DEVICES"] == "0,1"
    assert launch.env["APPTAINERENV_A"] == "1"

    elastic = NodeLayout(kind="elastic", nodes=2, min_nodes=1, tasks_per_node=4)
    launch = rank_launch(
        doc, paths, elastic, info, master_port=21000, rdzv_id="job-1-0", environ=environ
    )
    assert launch.argv[-1] == (
        "torchrun --nnodes=1:2 --nproc-per-node=4 --rdzv-backend=c10d "
        "--rdzv-endpoint=vm:21000 --rdzv-id=job-1-0 --no-python /bin/sh -c 'python train.py'"
    )
    assert "APPTAINERENV_RANK" not in launch.env  # torchrun gives each worker its own
