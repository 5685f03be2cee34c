"""Datasets: named sets of training files a task's jobs read (``trainingDS``).

A user uploads a dataset (``hpo dataset upload NAME FILES...``) into the artifact store
under their own prefix; each file is recorded with its size and sha256 and stored in
parts of :data:`PART_SIZE` bytes (``<owner>/datasets/<name>/<sha256>/<part>``), so an
interrupted upload resumes with the parts that are missing and a part fits one
presigned PUT. A dataset is ``uploading`` until every part is in the store, then
``ready``. The site harvester downloads the parts once per site into its content-
addressed cache and checks the whole file's sha256 (``edge/harvester/datacache.py``).

A site may also declare a dataset as already present on its shared filesystem (its
config's ``[datasets.present]``); a name neither uploaded nor present is handed to the
payload as a name, as before datasets existed.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.bounds import Count
from shared.clock import utcnow

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,199}$"
"""A dataset name: PanDA-style (``user.alice.mnist``, ``scope:name``), no '/'."""
PART_SIZE = 64 * 1024 * 1024
"""Bytes per stored part (the last part of a file is shorter)."""
MAX_FILES = 10_000
MAX_FILE_BYTES = 2**40
MAX_PATH = 1000
SHA256_PATTERN = r"^[0-9a-f]{64}$"
DatasetStatus = Literal["uploading", "ready"]


def check_file_path(path: str) -> str:
    """A file's name inside its dataset: a relative '/'-separated path that stays inside
    (no '', '.', '..' or hidden segments, no backslash or control character)."""
    if not path or len(path) > MAX_PATH:
        raise ValueError(f"a file name must have 1 to {MAX_PATH} characters")
    if "\\" in path or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError(f"file name {path!r} has a backslash or a control character")
    for part in path.split("/"):
        if part in ("", ".", "..") or part.startswith("."):
            raise ValueError(
                f"file name {path!r} must be a relative path without empty, '.', '..' "
                "or hidden segments"
            )
    return path


class DatasetFile(BaseModel):
    """One file of a dataset, as the user declared it before uploading."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=MAX_PATH)
    size: Count = Field(le=MAX_FILE_BYTES)
    sha256: str = Field(pattern=SHA256_PATTERN)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_file_path(value)


def part_count(size: int, part_size: int = PART_SIZE) -> int:
    """Parts a file of ``size`` bytes is stored in (an empty file is one empty part)."""
    return max(1, math.ceil(size / part_size))


def part_sizes(size: int, part_size: int = PART_SIZE) -> list[int]:
    count = part_count(size, part_size)
    return [min(part_size, size - i * part_size) for i in range(count)]


def dataset_prefix(owner: str, name: str) -> str:
    return f"{owner}/datasets/{name}/"


def part_key(owner: str, name: str, sha256: str, part: int) -> str:
    """Parts are numbered from 1, as S3 numbers multipart parts."""
    return f"{dataset_prefix(owner, name)}{sha256}/{part:05d}"


class Dataset(BaseModel):
    """``datasets`` record: id ``<owner>/<name>``."""

    id: str
    owner: str
    name: str
    files: list[DatasetFile]
    status: DatasetStatus = "uploading"
    part_size: int = PART_SIZE
    created: datetime = Field(default_factory=utcnow)
    updated: datetime = Field(default_factory=utcnow)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def same_files(self, files: list[DatasetFile]) -> bool:
        return sorted(self.files, key=lambda f: f.name) == sorted(files, key=lambda f: f.name)


def dataset_id(owner: str, name: str) -> str:
    return f"{owner}/{name}"
