"""The guarded reader of payload-written files (edge/harvester/payloadfile.py)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from edge.harvester.payloadfile import (
    PayloadFileError,
    PayloadFileLimits,
    PayloadJsonSyntaxError,
    PayloadReader,
    PayloadReadTimeoutError,
    parse_json,
    read_bytes,
    read_json,
)

LIMITS = PayloadFileLimits()


@pytest.fixture
def job(tmp_path: Path) -> Path:
    (tmp_path / "job" / "points" / "0").mkdir(parents=True)
    return tmp_path / "job"


def refusal(job: Path, relative: str) -> str:
    with pytest.raises(PayloadFileError) as caught:
        read_json(job, relative, LIMITS, "output.json")
    return str(caught.value)


def test_a_regular_file_is_read_and_a_missing_one_is_none(job: Path) -> None:
    (job / "points/0/output.json").write_text('{"loss": 0.5}')
    assert read_json(job, "points/0/output.json", LIMITS) == {"loss": 0.5}
    assert read_json(job, "points/0/missing.json", LIMITS) is None
    assert read_json(job, "points/9/output.json", LIMITS) is None


def test_a_link_as_a_parent_directory_is_refused_too(job: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "output.json").write_text('{"loss": 0.5}')
    (job / "points" / "1").symlink_to(elsewhere)
    reason = refusal(job, "points/1/output.json")
    assert reason.startswith("output.json (through points/1) is a symbolic link")


def test_a_fifo_is_refused_without_blocking(job: Path) -> None:
    os.mkfifo(job / "points/0/output.json")
    assert refusal(job, "points/0/output.json") == (
        "output.json is a FIFO; it must be a regular file"
    )


def test_the_size_cap_holds_for_the_read_itself(job: Path) -> None:
    (job / "big").write_bytes(b"x" * 2048)
    assert read_bytes(job, "big", 2048) == b"x" * 2048
    with pytest.raises(PayloadFileError, match=r"big is 2048 bytes, over the site.s limit of 2047"):
        read_bytes(job, "big", 2047)


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert parse_json("f", '{"a": "[[[[[[[[[[[[[[[[[[[[\\""}', 3) == {"a": '[[[[[[[[[[[[[[[[[[[["'}
    assert parse_json("f", "[[[1]]]", 3) == [[[1]]]
    with pytest.raises(PayloadFileError, match="4 levels deep; the limit is 3"):
        parse_json("f", "[[[[1]]]]", 3)


def test_syntax_errors_are_their_own_kind() -> None:
    with pytest.raises(PayloadJsonSyntaxError, match="f is not valid JSON"):
        parse_json("f", '{"loss": ', 64)


async def test_a_read_over_the_time_limit_lets_the_caller_go_on() -> None:
    reader = PayloadReader(PayloadFileLimits(read_timeout=0.05, reader_threads=1))
    release = threading.Event()
    try:
        with pytest.raises(PayloadReadTimeoutError, match=r"reading output\.json took longer"):
            await reader.call("output.json", release.wait)
    finally:
        release.set()
        reader.close()
    await asyncio.sleep(0)
