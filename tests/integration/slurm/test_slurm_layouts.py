"""Layouts 2-4 on the real one-node Slurm: real srun, real torch.distributed over gloo.

The payload initialises torch.distributed from exactly the variables the rank wrapper
exports (``init_method="env://"`` reads MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK) and
all-reduces ``RANK + 1 + 10 * LOCAL_RANK + 100 * NODE_RANK``: a wrong or missing
variable either stops the process group from forming or changes the sum.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any

import pytest

from edge.documents import NodeStatus
from edge.fsproto import JobPaths
from tests.integration.slurm.conftest import SlurmFactory, StageFactory
from tests.integration.slurm.test_slurm_batch import agent_log, poll_until_done

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(150)]

ALL_REDUCE = """
import json, os
import torch
import torch.distributed as dist

names = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")
seen = {name: os.environ.get(name) for name in names}
dist.init_process_group("gloo", init_method="env://")
rank = dist.get_rank()
mine = rank + 1 + 10 * int(os.environ["LOCAL_RANK"]) + 100 * int(os.environ["NODE_RANK"])
total = torch.tensor([float(mine)])
dist.all_reduce(total)
everyone = [None] * dist.get_world_size()
dist.all_gather_object(everyone, seen)
if rank == 0:
    result = {"status": 0, "loss": total.item(), "message": json.dumps(everyone)}
    with open("output.json", "w") as out:
        json.dump(result, out)
dist.destroy_process_group()
"""

INSTALL_TORCH = (
    "PyTorch is not installed in the test environment: run `pip install torch==2.13.0` "
    "(the CPU build; deploy/dev/test.sh does it)"
)


@pytest.fixture(scope="module")
def torch_installed() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.fail(INSTALL_TORCH, pytrace=False)


def output_of(paths: JobPaths) -> dict[str, Any]:
    output = paths.point_dir(0) / "output.json"
    assert output.exists(), f"no output; payload.log: {paths.payload_log.read_text()}"
    result: dict[str, Any] = json.loads(output.read_text())
    return result


def status_of(paths: JobPaths) -> NodeStatus:
    return NodeStatus.model_validate_json(paths.status.read_text())


def test_multi_node_ranks_all_reduce_with_the_exported_variables(
    slurm: SlurmFactory, stage: StageFactory, torch_installed: None
) -> None:
    paths = stage(f"{sys.executable} allreduce.py", task_files={"allreduce.py": ALL_REDUCE})
    batch = slurm(layout="multi_node", nodes=1, tasks_per_node=2, walltime="00:05:00")
    batch_id = batch.submit(paths.dir)
    poll_until_done(batch, batch_id, paths)
    status = status_of(paths)
    assert status.state == "finished", (agent_log(paths), paths.payload_log.read_text())
    result = output_of(paths)
    # ranks 0 and 1, local ranks 0 and 1, node rank 0: (0+1) + (1+1+10)
    assert result["loss"] == 13.0
    seen = json.loads(result["message"])
    assert [(s["RANK"], s["LOCAL_RANK"], s["NODE_RANK"], s["WORLD_SIZE"]) for s in seen] == [
        ("0", "0", "0", "2"),
        ("1", "1", "0", "2"),
    ]
    assert seen[0]["MASTER_ADDR"] == seen[1]["MASTER_ADDR"] == status.host.split(".")[0]
    assert seen[0]["MASTER_PORT"] == seen[1]["MASTER_PORT"]
    assert status.pid is None and status.points[0].exit_code == 0


def test_elastic_torchrun_starts_two_workers_on_the_one_node(
    slurm: SlurmFactory, stage: StageFactory, torch_installed: None
) -> None:
    paths = stage(f"{sys.executable} allreduce.py", task_files={"allreduce.py": ALL_REDUCE})
    batch = slurm(
        layout="elastic",
        nodes=2,
        min_nodes=1,  # Slurm grants the one node; the rendezvous goes on with it
        tasks_per_node=2,
        torchrun=[sys.executable, "-m", "torch.distributed.run"],
        walltime="00:05:00",
    )
    batch_id = batch.submit(paths.dir)
    poll_until_done(batch, batch_id, paths, timeout=120)
    assert status_of(paths).state == "finished", (
        agent_log(paths),
        paths.payload_log.read_text(),
    )
    result = output_of(paths)
    assert result["loss"] == 13.0
    seen = json.loads(result["message"])
    assert [(s["RANK"], s["LOCAL_RANK"], s["WORLD_SIZE"]) for s in seen] == [
        ("0", "0", "2"),
        ("1", "1", "2"),
    ]


def test_whole_node_payload_sees_every_gpu_of_the_node(
    slurm: SlurmFactory, stage: StageFactory
) -> None:
    paths = stage(
        'echo "$CUDA_VISIBLE_DEVICES" > gpus.txt; '
        'printf \'{"status": 0, "loss": 0.5}\' > output.json'
    )
    batch = slurm(layout="whole_node", gpus_per_node=6)
    poll_until_done(batch, batch.submit(paths.dir), paths)
    status = status_of(paths)
    assert status.state == "finished", agent_log(paths)
    seen = (paths.work / "gpus.txt").read_text().strip().split(",")
    assert sorted(seen) == [str(i) for i in range(6)]
    assert status.gpus == seen
