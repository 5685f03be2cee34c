"""phpo's ``segmentSpecFile``: the segments of a segmented task (docs/architecture.md §3, §6.1).

The file is a JSON list with one object per segment, as phpo documents it:
``[{"name": "name_A", "files": ["file_1", "file_3"]}, {"name": "name_B", "files":
["file_2"]}]``. Each segment is one model, optimised independently with its own search
space and its own ``maxPoints``; its jobs see only its ``files`` (in ``input_ds.json``
and ``%IN_DATA``) and its name (``%SEGMENT_NAME``). ``datasets`` (whole datasets
instead of files of ``trainingDS``) is accepted too and joins ``files``.

The name becomes part of point ids, job ids and artifact keys, so it is restricted to
letters, digits, ``_``, ``-`` and ``+`` (no dot: ids are dot-separated).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_+-]*$"
MAX_SEGMENTS = 1000


class SegmentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    files: list[str] = Field(default_factory=list, max_length=100_000)
    datasets: list[str] = Field(default_factory=list, max_length=100_000)

    @model_validator(mode="after")
    def _has_inputs(self) -> SegmentSpec:
        if not self.files and not self.datasets:
            raise ValueError("a segment needs its training 'files' (or 'datasets')")
        if any(not f.strip() for f in (*self.files, *self.datasets)):
            raise ValueError("file and dataset names must not be empty")
        if any("\0" in f or len(f) > 1000 for f in (*self.files, *self.datasets)):
            raise ValueError("file and dataset names must be under 1000 characters, without NUL")
        return self

    @property
    def training_files(self) -> list[str]:
        return [*self.files, *self.datasets]


_SPECS: TypeAdapter[list[SegmentSpec]] = TypeAdapter(list[SegmentSpec])


class SegmentSpecError(ValueError):
    """``issues`` are (location inside the file, message) pairs."""

    def __init__(self, issues: list[tuple[tuple[int | str, ...], str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in issues))
        self.issues = issues


def parse_segment_specs(raw: Any) -> list[SegmentSpec]:
    """The segments of ``raw`` (the decoded file), in file order. Raises
    :class:`SegmentSpecError` locating every problem."""
    if not isinstance(raw, list) or not raw:
        raise SegmentSpecError([((), "must be a non-empty JSON list of segments")])
    if len(raw) > MAX_SEGMENTS:
        raise SegmentSpecError([((), f"{len(raw)} segments; the limit is {MAX_SEGMENTS}")])
    try:
        specs = _SPECS.validate_python(raw)
    except ValidationError as exc:
        raise SegmentSpecError(
            [(tuple(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
        ) from None
    seen: dict[str, int] = {}
    issues: list[tuple[tuple[int | str, ...], str]] = []
    for index, spec in enumerate(specs):
        if spec.name in seen:
            issues.append(((index, "name"), f"{spec.name!r} is also segment {seen[spec.name]}"))
        seen.setdefault(spec.name, index)
    if issues:
        raise SegmentSpecError(issues)
    return specs
