"""Helpers for the edge unit tests: job specs and staged job directories."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.documents import NodeSettings
from edge.fsproto import JobPaths
from edge.harvester.staging import stage_job
from shared.edge_api import JobSpec, PointSpec

SpecFactory = Callable[..., JobSpec]
StageFactory = Callable[..., JobPaths]


@pytest.fixture
def make_spec() -> SpecFactory:
    def make(
        exec_: str = "true", *, job_id: str = "job-1", n_points: int = 1, **fields: Any
    ) -> JobSpec:
        values: dict[str, Any] = {
            "job_id": job_id,
            "task_id": "task-1",
            "owner": "alice",
            "segment": "main",
            "attempt": 1,
            "generation": 1,
            "lease_expires": datetime.now(UTC) + timedelta(minutes=5),
            "points": [
                PointSpec(point_id=f"p{i}", index=i, params={"lr": 0.1 * (i + 1), "layers": i})
                for i in range(n_points)
            ],
            "exec": exec_,
        }
        values.update(fields)
        return JobSpec.model_validate(values)

    return make


@pytest.fixture
def stage(tmp_path: Path, make_spec: SpecFactory) -> StageFactory:
    """Stage a job under ``tmp_path/root`` with fast node settings."""

    def staged(exec_: str = "true", *, grace: float = 5.0, **fields: Any) -> JobPaths:
        node = NodeSettings(heartbeat_interval=0.2, kill_grace_seconds=grace)
        paths, _ = stage_job(tmp_path / "root", make_spec(exec_, **fields), node)
        return paths

    return staged
