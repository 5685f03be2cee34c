"""Staging a one-point job for a given runtime, as the harvester would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.documents import NodeSettings
from edge.fsproto import JobPaths
from edge.harvester.staging import stage_job
from shared.edge_api import JobSpec, PointSpec
from shared.runtime import RuntimeConfig


def stage(
    root: Path,
    runtime: RuntimeConfig,
    image: str | None,
    *,
    gpus: list[str] | None = None,
    **fields: Any,
) -> JobPaths:
    values: dict[str, Any] = {
        "job_id": "job-1",
        "task_id": "task-1",
        "owner": "alice",
        "segment": "main",
        "attempt": 1,
        "generation": 1,
        "lease_expires": datetime.now(UTC) + timedelta(minutes=5),
        "points": [PointSpec(point_id="p0", index=0, params={"lr": 0.1})],
        "exec": "true",
        **fields,
    }
    node = NodeSettings(
        heartbeat_interval=0.2, kill_grace_seconds=5, runtime=runtime, image=image, gpus=gpus
    )
    paths, _ = stage_job(root, JobSpec.model_validate(values), node)
    return paths
