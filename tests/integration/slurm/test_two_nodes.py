"""Layouts 3 and 4 across two real Slurm nodes: real srun, real torch.distributed (gloo).

The test cluster's partition ``duo`` has two nodes, hpo-node1 and hpo-node2, each a
slurmd in a network and UTS namespace of its own with its own address and hostname
(deploy/dev/slurm.py), so the ranks of one payload meet over a real link between two
hosts. The payload all-reduces ``RANK + 1 + 10 * LOCAL_RANK + 100 * NODE_RANK`` from
exactly the variables the rank wrapper exports and reports the host each rank ran on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.integration.slurm.conftest import SlurmFactory, StageFactory
from tests.integration.slurm.test_slurm_batch import agent_log, poll_until_done
from tests.integration.slurm.test_slurm_layouts import (
    ALL_REDUCE,
    INSTALL_TORCH,
    output_of,
    status_of,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(180)]

PARTITION = "duo"
PAYLOAD = ALL_REDUCE.replace(
    "seen = {name: os.environ.get(name) for name in names}",
    "seen = {name: os.environ.get(name) for name in names}\n"
    'import socket\nseen["HOST"] = socket.gethostname()',
)


@pytest.fixture(scope="module")
def two_nodes(slurm_conf: str) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.fail(INSTALL_TORCH, pytrace=False)
    info = subprocess.run(
        ["sinfo", "--noheader", "--partition", PARTITION, "--Node", "--format=%N %T"],
        env={**os.environ, "SLURM_CONF": slurm_conf},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    nodes = dict(line.split() for line in info.stdout.splitlines() if line.strip())
    if sorted(nodes) != ["hpo-node1", "hpo-node2"] or set(nodes.values()) - {"idle", "mixed"}:
        pytest.fail(
            f"the test Slurm has no idle two-node partition {PARTITION!r} (sinfo: "
            f"{nodes or info.stderr.strip()}): deploy/dev/infra.py starts it as root unless "
            "HPO_DEV_SLURM_NODES=1 (`sudo python3 deploy/dev/slurm.py up --two-nodes`); its "
            "log says why it could not",
            pytrace=False,
        )


def test_multi_node_ranks_all_reduce_across_two_hosts(
    slurm: SlurmFactory, stage: StageFactory, two_nodes: None
) -> None:
    paths = stage(f"{sys.executable} allreduce.py", task_files={"allreduce.py": PAYLOAD})
    batch = slurm(
        partition=PARTITION, layout="multi_node", nodes=2, tasks_per_node=2, walltime="00:05:00"
    )
    poll_until_done(batch, batch.submit(paths.dir), paths, timeout=150)
    status = status_of(paths)
    assert status.state == "finished", (agent_log(paths), paths.payload_log.read_text())
    result = output_of(paths)
    # ranks 0-3: (1+2+3+4) + 10 * (0+1+0+1) + 100 * (0+0+1+1)
    assert result["loss"] == 230.0
    seen = json.loads(result["message"])
    assert [(s["RANK"], s["LOCAL_RANK"], s["NODE_RANK"], s["WORLD_SIZE"]) for s in seen] == [
        ("0", "0", "0", "4"),
        ("1", "1", "0", "4"),
        ("2", "0", "1", "4"),
        ("3", "1", "1", "4"),
    ]
    assert [s["HOST"] for s in seen] == ["hpo-node1", "hpo-node1", "hpo-node2", "hpo-node2"]
    assert {s["MASTER_ADDR"] for s in seen} == {"hpo-node1"}
    assert status.host.split(".")[0] == "hpo-node1"


def test_elastic_torchrun_forms_one_group_over_two_hosts(
    slurm: SlurmFactory, stage: StageFactory, two_nodes: None
) -> None:
    paths = stage(f"{sys.executable} allreduce.py", task_files={"allreduce.py": PAYLOAD})
    batch = slurm(
        partition=PARTITION,
        layout="elastic",
        nodes=2,
        min_nodes=2,
        tasks_per_node=2,
        torchrun=[sys.executable, "-m", "torch.distributed.run"],
        walltime="00:05:00",
    )
    poll_until_done(batch, batch.submit(paths.dir), paths, timeout=150)
    assert status_of(paths).state == "finished", (
        agent_log(paths),
        paths.payload_log.read_text(),
    )
    result = output_of(paths)
    seen = json.loads(result["message"])
    assert sorted(s["RANK"] for s in seen) == ["0", "1", "2", "3"]
    assert {s["WORLD_SIZE"] for s in seen} == {"4"}
    assert sorted(s["HOST"] for s in seen) == ["hpo-node1", "hpo-node1", "hpo-node2", "hpo-node2"]
    by_host: dict[str, set[str]] = {}
    for s in seen:
        by_host.setdefault(s["HOST"], set()).add(s["LOCAL_RANK"])
    assert by_host == {"hpo-node1": {"0", "1"}, "hpo-node2": {"0", "1"}}
    # (1+2+3+4) + 10 * (0+1+0+1) + 100 * (two ranks on node rank 1)
    assert result["loss"] == 230.0
