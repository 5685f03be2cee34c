"""What a job's payload is given to read (input_ds.json, %IN_DATA) for each kind of
dataset: uploaded (links into the cache), present at the site (its paths in place),
or unknown (the name, as before); a segment's files select among them."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.harvester.datasets import DatasetStagingError, plan_inputs
from shared.edge_api import DatasetInput, JobSpec, PointSpec, StagedFile


def spec(training: list[str], datasets: list[DatasetInput]) -> JobSpec:
    values: dict[str, Any] = {
        "job_id": "job-1",
        "task_id": "task-1",
        "owner": "alice",
        "segment": "main",
        "attempt": 1,
        "generation": 1,
        "lease_expires": datetime.now(UTC) + timedelta(minutes=5),
        "points": [PointSpec(point_id="p", index=0, params={})],
        "exec": "true",
        "training_files": training,
        "datasets": datasets,
    }
    return JobSpec.model_validate(values)


def staged(name: str) -> StagedFile:
    return StagedFile(
        name=name, size=1, sha256=hashlib.sha256(name.encode()).hexdigest(), parts=["u"]
    )


UPLOADED = DatasetInput(name="user.a.ds", files=[staged("a.npz"), staged("sub/b.npz")])


def test_every_file_of_an_uploaded_dataset_without_segments() -> None:
    inputs, held = plan_inputs(spec(["user.a.ds"], [UPLOADED]), {})
    assert inputs.training_files == ["datasets/user.a.ds/a.npz", "datasets/user.a.ds/sub/b.npz"]
    assert inputs.links == {
        "datasets/user.a.ds/a.npz": staged("a.npz").sha256,
        "datasets/user.a.ds/sub/b.npz": staged("sub/b.npz").sha256,
    }
    assert [f.name for f in held] == ["a.npz", "sub/b.npz"]


def test_a_segment_gets_only_its_files_and_its_datasets_files(tmp_path: Path) -> None:
    present = tmp_path / "gpfs" / "calib"
    (present / "run1").mkdir(parents=True)
    (present / "run1" / "x.root").write_bytes(b"x")
    (present / "y.root").write_bytes(b"y")
    (present / ".hidden").write_bytes(b"h")
    job = spec(
        ["sub/b.npz", "calib", "user.old"],
        [
            DatasetInput(name="user.a.ds", files=[staged("sub/b.npz")], select=["sub/b.npz"]),
            DatasetInput(name="calib"),
            DatasetInput(name="user.old"),
        ],
    )
    inputs, held = plan_inputs(job, {"calib": present})
    assert inputs.training_files == [
        "datasets/user.a.ds/sub/b.npz",
        str(present / "run1" / "x.root"),
        str(present / "y.root"),
        "user.old",  # neither uploaded nor at the site: the name, as before
    ]
    assert [f.name for f in held] == ["sub/b.npz"]


def test_segment_files_without_a_dataset_stay_names() -> None:
    job = spec(["file_1", "file_3"], [])
    assert plan_inputs(job, {})[0].training_files == ["file_1", "file_3"]


def test_a_segment_file_the_dataset_lacks_fails_the_job_naming_it(tmp_path: Path) -> None:
    job = spec(
        ["a.npz", "c.npz"],
        [DatasetInput(name="user.a.ds", files=[staged("a.npz")], select=["a.npz", "c.npz"])],
    )
    with pytest.raises(DatasetStagingError, match=r"dataset user.a.ds has no file c.npz"):
        plan_inputs(job, {})
    missing = spec(["calib"], [DatasetInput(name="calib")])
    with pytest.raises(DatasetStagingError, match=r"directory .* for it does not exist"):
        plan_inputs(missing, {"calib": tmp_path / "nowhere"})


def test_names_a_site_must_not_trust_are_refused() -> None:
    for ds in (
        DatasetInput(name="../up", files=[staged("a")]),
        DatasetInput(name="ok", files=[staged("../../etc/passwd")]),
    ):
        with pytest.raises(DatasetStagingError):
            plan_inputs(spec([], [ds]), {})


def test_links_left_in_reported_jobs_by_a_dead_harvester_are_swept(tmp_path: Path) -> None:
    from edge.harvester.datasets import sweep_reported_inputs

    cached = tmp_path / "cache-object"
    cached.write_bytes(b"data")
    for name, reported in (("done", True), ("running", False)):
        links = tmp_path / "jobs" / name / "work" / "datasets" / "ds"
        links.mkdir(parents=True)
        os.link(cached, links / "a.bin")
        if reported:
            (tmp_path / "jobs" / name / "reported.json").write_text("{}")
    assert sweep_reported_inputs(tmp_path) == 1
    assert not (tmp_path / "jobs" / "done" / "work" / "datasets").exists()
    assert (tmp_path / "jobs" / "running" / "work" / "datasets" / "ds" / "a.bin").exists()
    assert cached.stat().st_nlink == 2
