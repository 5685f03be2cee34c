"""Staging a leased job: complete directories only, and nothing outside them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.documents import JobDocument, NodeSettings, ReportRecord
from edge.fsproto import write_json_atomic
from edge.harvester.staging import StagingError, stage_job, sweep_staging_leftovers
from shared.clock import utcnow
from shared.edge_api import JobSpec, OutputFiles

SpecFactory = Callable[..., JobSpec]


def test_stage_writes_everything_the_payload_reads(tmp_path: Path, make_spec: SpecFactory) -> None:
    spec = make_spec(
        "bash ./exec_in_container.sh",
        task_files={"exec_in_container.sh": "echo hi\n", "search_space.json": "{}"},
        training_files=["/data/a.h5", "/data/b.h5"],
        files=OutputFiles(input="in.json", training_data="ds.json"),
    )
    paths, new = stage_job(tmp_path, spec, NodeSettings())
    assert new
    assert paths.dir == tmp_path / "jobs" / "job-1"
    doc = JobDocument.model_validate_json(paths.job_json.read_text())
    assert doc.spec == spec
    assert json.loads((paths.work / "in.json").read_text()) == {"lr": 0.1, "layers": 0}
    assert json.loads((paths.work / "ds.json").read_text()) == ["/data/a.h5", "/data/b.h5"]
    assert (paths.work / "exec_in_container.sh").read_text() == "echo hi\n"
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == ["job-1"]


@pytest.mark.parametrize(
    "fields",
    [
        {"task_files": {"../evil.sh": "rm -rf ~"}},
        {"task_files": {"sub/dir.sh": ""}},
        {"task_files": {"..": ""}},
        {"files": OutputFiles(input="../../input.json")},
        {"files": OutputFiles(metrics="/tmp/metrics.tgz")},
        {"env": {"A=B": "x"}},
        {"job_id": "../job"},
        {"job_id": ".hidden"},
        {"n_points": 0},
    ],
)
def test_unsafe_specs_are_refused_and_leave_nothing(
    tmp_path: Path, make_spec: SpecFactory, fields: dict[str, object]
) -> None:
    with pytest.raises(StagingError):
        stage_job(tmp_path / "root", make_spec(**fields), NodeSettings())
    assert not (tmp_path / "root" / "jobs").exists() or not any(
        (tmp_path / "root" / "jobs").iterdir()
    )
    assert not (tmp_path / "evil.sh").exists()


def test_a_job_leased_again_is_adopted(tmp_path: Path, make_spec: SpecFactory) -> None:
    paths, _ = stage_job(tmp_path, make_spec(), NodeSettings())
    (paths.work / "progress.txt").write_text("half done")
    again, new = stage_job(tmp_path, make_spec(generation=2), NodeSettings())
    assert not new
    assert again == paths
    assert JobDocument.model_validate_json(paths.job_json.read_text()).spec.generation == 2
    assert (paths.work / "progress.txt").read_text() == "half done"


def test_a_reported_job_leased_again_starts_afresh(tmp_path: Path, make_spec: SpecFactory) -> None:
    paths, _ = stage_job(tmp_path, make_spec(), NodeSettings())
    (paths.work / "old.txt").write_text("old")
    record = ReportRecord(kind="failed", generation=1, accepted=False, reported_at=utcnow())
    write_json_atomic(paths.reported, record.model_dump(mode="json"))
    again, new = stage_job(tmp_path, make_spec(generation=2), NodeSettings())
    assert new
    assert not (again.work / "old.txt").exists()
    assert not again.reported.exists()
    assert len(list((tmp_path / "jobs" / ".attic").iterdir())) == 1


def test_half_staged_directories_are_swept(tmp_path: Path) -> None:
    leftover = tmp_path / "jobs" / ".staging-job-9.abcd"
    (leftover / "work").mkdir(parents=True)
    sweep_staging_leftovers(tmp_path)
    assert not leftover.exists()
