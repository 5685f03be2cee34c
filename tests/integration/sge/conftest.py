"""Fixtures for the tests against a real Grid Engine cell.

``deploy/dev/infra.py`` (and so ``deploy/dev/test.sh``) starts a private one-node cell
when run as root and exports ``HPO_TEST_SGE_ROOT``, its SGE_ROOT; the variables the
client commands need are in its ``<cell>/common/settings.sh``. A test marked ``sge``
that finds no cell fails and says how to start one; it never skips.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.batch import SgeBatchConfig
from edge.batch.options import ClassBatchOptions
from edge.batch.sge import SgeBatch
from edge.documents import NodeSettings
from edge.fsproto import JobPaths
from edge.harvester.staging import stage_job
from shared.edge_api import JobSpec
from shared.runtime import ProcessRuntimeConfig
from tests.unit.edge.conftest import make_spec  # the edge tests' job specs

__all__ = ["make_spec"]

HOW_TO_START = (
    "run the suite as root with `deploy/dev/test.sh` (deploy/dev/infra.py starts a one-node "
    "Grid Engine), or start one with `sudo python3 deploy/dev/sge.py up` and export what it "
    "prints"
)


def cell_variables(root: Path) -> dict[str, str]:
    """SGE_ROOT, SGE_CELL and the ports, from the cell's settings.sh."""
    for settings in root.glob("*/common/settings.sh"):
        return dict(re.findall(r"^(SGE_\w+)='?([^';]*)'?;", settings.read_text(), re.M))
    return {}


@pytest.fixture(scope="session")
def sge_cell() -> Iterator[dict[str, str]]:
    """The test cell's variables, exported for the whole session."""
    root = os.environ.get("HPO_TEST_SGE_ROOT", "")
    if not root:
        pytest.fail(f"Grid Engine: HPO_TEST_SGE_ROOT is not set; {HOW_TO_START}", pytrace=False)
    variables = cell_variables(Path(root))
    if not variables:
        pytest.fail(
            f"Grid Engine: no <cell>/common/settings.sh under {root} (HPO_TEST_SGE_ROOT); "
            f"{HOW_TO_START}",
            pytrace=False,
        )
    try:
        listing = subprocess.run(
            ["qstat", "-f"],
            env={**os.environ, **variables},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"Grid Engine: qstat cannot run ({exc}); {HOW_TO_START}", pytrace=False)
    if listing.returncode or "all.q@" not in listing.stdout:
        pytest.fail(
            f"Grid Engine at {root} has no usable queue "
            f"({(listing.stderr or listing.stdout).strip()}); {HOW_TO_START}",
            pytrace=False,
        )
    with pytest.MonkeyPatch.context() as patch:
        for name, value in variables.items():
            patch.setenv(name, value)
        yield variables


class TrackedSge(SgeBatch):
    """The real adapter, remembering what it submitted so the test can clean up."""

    submitted: list[str]

    def submit(self, job_dir: Path, options: ClassBatchOptions | None = None) -> str:
        batch_id = super().submit(job_dir, options)
        self.submitted.append(batch_id)
        return batch_id


SgeFactory = Callable[..., TrackedSge]


@pytest.fixture
def sge(sge_cell: dict[str, str]) -> Iterator[SgeFactory]:
    """``sge(**config)`` builds an adapter on the test cell; what it submitted is deleted
    after the test."""
    made: list[TrackedSge] = []

    def make(*, isolate_network: bool = False, **config: Any) -> TrackedSge:
        batch = TrackedSge(SgeBatchConfig(**config), isolate_network=isolate_network)
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
    def staged(exec_: str, *, job_id: str = "job-1", **fields: Any) -> JobPaths:
        node = NodeSettings(
            heartbeat_interval=0.5, kill_grace_seconds=3.0, runtime=ProcessRuntimeConfig()
        )
        paths, _ = stage_job(tmp_path / "root", make_spec(exec_, job_id=job_id, **fields), node)
        return paths

    return staged
