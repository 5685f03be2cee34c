"""Fixtures for the tests against a real Slurm cluster.

``deploy/dev/infra.py`` (and so ``deploy/dev/test.sh``) starts a private one-node cluster
when run as root and exports ``HPO_TEST_SLURM_CONF``, the path of its slurm.conf. A test
marked ``slurm`` that finds no such cluster fails and says how to start one; it never
skips.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.batch import SlurmBatchConfig
from edge.batch.options import ClassBatchOptions
from edge.batch.slurm import SlurmBatch
from edge.documents import NodeSettings
from edge.fsproto import JobPaths
from edge.harvester.staging import stage_job
from shared.edge_api import JobSpec
from shared.runtime import ProcessRuntimeConfig
from tests.unit.edge.conftest import make_spec  # the edge tests' job specs

__all__ = ["make_spec"]

HOW_TO_START = (
    "run the suite as root with `deploy/dev/test.sh` (deploy/dev/infra.py starts a one-node "
    "Slurm), or start one with `sudo python3 deploy/dev/slurm.py up` and export what it prints"
)


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[str]:
    """The test cluster's slurm.conf, exported as SLURM_CONF for the whole session."""
    conf = os.environ.get("HPO_TEST_SLURM_CONF", "")
    if not conf:
        pytest.fail(f"Slurm: HPO_TEST_SLURM_CONF is not set; {HOW_TO_START}", pytrace=False)
    if not Path(conf).is_file():
        pytest.fail(
            f"Slurm: {conf} (HPO_TEST_SLURM_CONF) does not exist; {HOW_TO_START}", pytrace=False
        )
    try:
        info = subprocess.run(
            ["sinfo", "--noheader", "--Node", "--format=%T"],
            env={**os.environ, "SLURM_CONF": conf},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"Slurm: sinfo cannot run ({exc}); {HOW_TO_START}", pytrace=False)
    states = info.stdout.split()
    if info.returncode or not any(s in ("idle", "mixed", "allocated") for s in states):
        pytest.fail(
            f"Slurm at {conf} has no usable node (sinfo: {states or info.stderr.strip()}); "
            f"{HOW_TO_START}",
            pytrace=False,
        )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", conf)
        yield conf


class TrackedSlurm(SlurmBatch):
    """The real adapter, remembering what it submitted so the test can clean up."""

    submitted: list[str]

    def submit(self, job_dir: Path, options: ClassBatchOptions | None = None) -> str:
        batch_id = super().submit(job_dir, options)
        self.submitted.append(batch_id)
        return batch_id


SlurmFactory = Callable[..., TrackedSlurm]


@pytest.fixture
def slurm(slurm_conf: str) -> Iterator[SlurmFactory]:
    """``slurm(isolate_network=False, **config)`` builds an adapter on the test cluster;
    whatever it submitted is cancelled after the test."""
    made: list[TrackedSlurm] = []

    def make(*, isolate_network: bool = False, **config: Any) -> TrackedSlurm:
        batch = TrackedSlurm(SlurmBatchConfig(**config), isolate_network=isolate_network)
        batch.submitted = []
        made.append(batch)
        return batch

    yield make
    for batch in made:
        for batch_id in batch.submitted:
            batch.cancel(batch_id)


StageFactory = Callable[..., JobPaths]


@pytest.fixture
def stage(tmp_path: Path, make_spec: Callable[..., JobSpec]) -> StageFactory:
    """Stage a job under ``tmp_path/root``; ``pass_env`` names node variables the payload
    may see (the process runtime hides the others)."""

    def staged(exec_: str, *, pass_env: tuple[str, ...] = (), **fields: Any) -> JobPaths:
        node = NodeSettings(
            heartbeat_interval=0.5,
            kill_grace_seconds=3.0,
            runtime=ProcessRuntimeConfig(pass_env=list(pass_env)),
        )
        paths, _ = stage_job(tmp_path / "root", make_spec(exec_, **fields), node)
        return paths

    return staged
