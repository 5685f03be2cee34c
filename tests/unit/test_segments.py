"""Segmented tasks: phpo's segmentSpecFile and one search space per segment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.api.schemas import TaskSubmission
from services.api.submission import SubmissionError, build_task
from shared.domain.segmentspec import SegmentSpecError, parse_segment_specs
from shared.searchspace import parse_search_space

SPEC = [
    {"name": "name_A", "files": ["file_1", "file_3"]},
    {"name": "name_B", "files": ["file_2"]},
]
SPACE_A = {"lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}}}
SPACE_B = {"depth": {"type": "Choice", "params": {"choices": [2, 4, 8]}}}


def submission(space: object, spec: object = SPEC, **config: Any) -> TaskSubmission:
    return TaskSubmission.model_validate(
        {
            "config": {
                "evaluationExec": "python toy.py %SEGMENT_NAME",
                "segmentSpecFile": "seg.json",
                "searchSpaceFile": "space.json",
                **config,
            },
            "files": {"seg.json": json.dumps(spec), "space.json": json.dumps(space)},
        }
    )


def locs(sub: TaskSubmission) -> list[list[object]]:
    with pytest.raises(SubmissionError) as info:
        build_task(sub, "alice", max_files_bytes=10**6)
    return [e["loc"] for e in info.value.errors]


def test_phpo_segment_spec_is_read_in_order() -> None:
    specs = parse_segment_specs([*SPEC, {"name": "c-3", "datasets": ["user.x.ds"]}])
    assert [s.name for s in specs] == ["name_A", "name_B", "c-3"]
    assert [s.training_files for s in specs] == [["file_1", "file_3"], ["file_2"], ["user.x.ds"]]


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ({"name": "a", "files": ["f"]}, ()),
        ([], ()),
        ([{"files": ["f"]}], (0, "name")),
        ([{"name": "a.b", "files": ["f"]}], (0, "name")),
        ([{"name": "a", "files": []}], (0,)),
        ([{"name": "a", "files": ["f"], "file": ["g"]}], (0, "file")),
        ([{"name": "a", "files": ["f"]}, {"name": "a", "files": ["g"]}], (1, "name")),
    ],
)
def test_bad_segment_specs_name_the_entry(raw: object, loc: tuple[object, ...]) -> None:
    with pytest.raises(SegmentSpecError) as info:
        parse_segment_specs(raw)
    assert info.value.issues[0][0] == loc


def test_one_segment_per_entry_each_with_its_space_and_files() -> None:
    task, segments = build_task(submission([SPACE_A, SPACE_B]), "alice", max_files_bytes=10**6)
    assert task.config.segmented
    assert [(s.name, s.index, s.files) for s in segments] == [
        ("name_A", 0, ["file_1", "file_3"]),
        ("name_B", 1, ["file_2"]),
    ]
    assert [s.id for s in segments] == [f"{task.id}.name_A", f"{task.id}.name_B"]
    assert [parse_search_space(s.search_space).names for s in segments] == [("lr",), ("depth",)]
    assert [s.space_form for s in segments] == ["phpo", "idds"]


def test_one_space_is_cloned_for_every_segment() -> None:
    _, segments = build_task(submission(SPACE_A), "alice", max_files_bytes=10**6)
    assert len(segments) == 2
    assert segments[0].search_space == segments[1].search_space


def test_unsegmented_task_has_one_main_segment() -> None:
    sub = TaskSubmission.model_validate(
        {"config": {"evaluationExec": "x", "trainingDS": "user.ds"}, "searchSpace": SPACE_A}
    )
    task, segments = build_task(sub, "alice", max_files_bytes=10**6)
    assert not task.config.segmented
    assert [(s.name, s.files) for s in segments] == [("main", [])]


def test_errors_name_the_file_and_key() -> None:
    assert locs(submission([SPACE_A])) == [["body", "files", "space.json"]]
    bad_b = {"depth": {"method": "uniformint", "dimension": {"low": 5, "high": 1}}}
    assert locs(submission([SPACE_A, bad_b]))[0][:5] == [
        "body",
        "files",
        "space.json",
        1,
        "depth",
    ]
    assert locs(submission(SPACE_A, spec=[{"name": "x y", "files": ["f"]}])) == [
        ["body", "files", "seg.json", 0, "name"]
    ]
    missing = submission(SPACE_A)
    del missing.files["seg.json"]
    assert locs(missing) == [["body", "files", "seg.json"]]
