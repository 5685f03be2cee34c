"""Reading a payload's intermediate-values file (edge/harvester/curves.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.harvester.curves import MAX_READ, MAX_VALUES, read_new_lines
from edge.harvester.payloadfile import PayloadFileError


def steps(path: Path, offset: int) -> tuple[list[tuple[int, float]], int, int]:
    new = read_new_lines(path.parent, path.name, offset)
    return [(v.step, v.value) for v in new.values], new.offset, new.bad


def test_missing_file_is_nothing_yet(tmp_path: Path) -> None:
    assert steps(tmp_path / "intermediate.jsonl", 0) == ([], 0, 0)


def test_only_complete_lines_are_read_and_reading_resumes(tmp_path: Path) -> None:
    path = tmp_path / "intermediate.jsonl"
    path.write_text('{"step": 0, "value": 1.5}\n{"step": 1, "val')
    values, offset, bad = steps(path, 0)
    assert (values, bad) == ([(0, 1.5)], 0)
    assert offset == len('{"step": 0, "value": 1.5}\n')
    with open(path, "a") as handle:  # the payload finishes its line and adds another
        handle.write('ue": 0.75}\n{"step": 2, "value": 0.5}\n')
    values, offset, _ = steps(path, offset)
    assert values == [(1, 0.75), (2, 0.5)]
    assert offset == path.stat().st_size
    assert steps(path, offset) == ([], offset, 0)


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "intermediate.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"step": 0, "value": 1.0}',
                "not json",
                '{"step": -1, "value": 1.0}',
                '{"step": 1, "value": NaN}',
                '{"step": 2}',
                "",
                '{"step": 3, "value": 0.5, "epoch": 7}',
            ]
        )
        + "\n"
    )
    values, offset, bad = steps(path, 0)
    assert values == [(0, 1.0), (3, 0.5)]
    assert bad == 4
    assert offset == path.stat().st_size


def test_a_long_file_is_read_in_slices(tmp_path: Path) -> None:
    path = tmp_path / "intermediate.jsonl"
    total = MAX_VALUES + 5
    path.write_text("".join(f'{{"step": {i}, "value": {i}}}\n' for i in range(total)))
    first, offset, _ = steps(path, 0)
    rest, end, _ = steps(path, offset)
    assert [s for s, _ in first + rest] == list(range(total))
    assert end == path.stat().st_size


def test_a_line_longer_than_one_read_fails_the_job_rather_than_stall_it(tmp_path: Path) -> None:
    path = tmp_path / "intermediate.jsonl"
    path.write_bytes(b'{"step": 0, "value": 1.0}\n' + b" " * MAX_READ)
    values, offset, _ = steps(path, 0)
    assert values == [(0, 1.0)]
    with pytest.raises(PayloadFileError, match="has a line longer than 1048576 bytes"):
        steps(path, offset)
