"""The shared-filesystem rules: atomic writes, tolerant reads, skew-free ages."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edge.fsproto import (
    UnsafeNameError,
    check_file_name,
    file_age,
    read_json,
    tail_text,
    touch,
    write_json_atomic,
)


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    write_json_atomic(target, {"state": "running"})
    write_json_atomic(target, {"state": "finished"})
    assert read_json(target) == {"state": "finished"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "job.json"
    write_json_atomic(target, {"v": 1})

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(target, {"v": 2})
    monkeypatch.undo()
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]


def test_tolerant_read_of_missing_and_half_written_files(tmp_path: Path) -> None:
    assert read_json(tmp_path / "nothing.json") is None
    half = tmp_path / "half.json"
    half.write_text('{"state": "runn')
    assert read_json(half) is None
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    assert read_json(binary) is None


def test_age_comes_from_the_file_servers_clock_not_the_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat = tmp_path / "heartbeat"
    touch(heartbeat)
    written = heartbeat.stat().st_mtime
    os.utime(heartbeat, (written - 30, written - 30))
    # This host's clock is an hour off: the age must not change.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    age = file_age(heartbeat)
    assert age is not None
    assert 29 <= age < 35


def test_age_of_a_file_written_by_a_node_whose_clock_runs_ahead_is_zero(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    touch(heartbeat)
    ahead = time.time() + 120
    os.utime(heartbeat, (ahead, ahead))
    assert file_age(heartbeat) == 0.0


def test_age_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert file_age(tmp_path / "heartbeat") is None


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "x..y", "a\0b"])
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeNameError):
        check_file_name(name)


@pytest.mark.parametrize("name", ["input.json", ".env", "run_v2.sh", "metrics.tgz"])
def test_plain_file_names_are_accepted(name: str) -> None:
    assert check_file_name(name) == name


def test_tail_is_bounded_and_respects_offsets(tmp_path: Path) -> None:
    log = tmp_path / "payload.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail_text(log, max_lines=2) == "line 98\nline 99"
    start = len("".join(f"line {i}\n" for i in range(10)))
    end = len("".join(f"line {i}\n" for i in range(12)))
    assert tail_text(log, start=start, end=end) == "line 10\nline 11"
    assert tail_text(tmp_path / "missing.log") == ""
