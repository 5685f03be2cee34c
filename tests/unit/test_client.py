"""The CLI's submission building and error rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.http import _readable
from client.submission import SubmissionInputError, build_submission, load_json_config


def test_flags_override_the_loaded_config_and_files_travel(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"evaluationExec": "bash run.sh", "maxPoints": 10}))
    (tmp_path / "run.sh").write_text("echo hi\n")
    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "data.bin").write_bytes(b"\0\1")
    body = build_submission(
        load_json_config(config), {"maxPoints": 50, "site": None}, tmp_path, name="n"
    )
    assert body["config"] == {"evaluationExec": "bash run.sh", "maxPoints": 50}
    assert sorted(body["files"]) == ["config.json", "run.sh", "train.py"]


def test_bad_local_input_is_explained(tmp_path: Path) -> None:
    with pytest.raises(SubmissionInputError, match="no file"):
        load_json_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(SubmissionInputError, match="not valid JSON"):
        load_json_config(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(SubmissionInputError, match="JSON object"):
        load_json_config(tmp_path / "list.json")


def test_validation_errors_read_as_field_and_message() -> None:
    detail = [
        {"loc": ["body", "config", "maxPoints"], "msg": "Input should be greater than 0"},
        {"loc": ["body", "searchSpace", "lr", "dimension", "low"], "msg": "must be > 0"},
    ]
    assert _readable(detail) == (
        "config.maxPoints: Input should be greater than 0\n"
        "searchSpace.lr.dimension.low: must be > 0"
    )
    assert _readable("no task t1") == "no task t1"


def test_a_trailing_comma_in_the_loaded_config_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    lines = ["{", '  "evaluationExec": "bash run.sh",', '  "maxPoints": 10,', "}"]
    config.write_text("\n".join(lines) + "\n")
    with pytest.raises(SubmissionInputError) as info:
        load_json_config(config)
    assert "a trailing comma after the last entry on line 3?" in str(info.value)
    assert str(config) in str(info.value)
