"""From a submission to the records of a new task (pure: validation and construction)."""

from __future__ import annotations

from typing import Any, Literal

from bson import encode
from bson.errors import InvalidDocument

from services.api.schemas import TaskSubmission
from services.steering.algorithms.grid import CONDITIONAL_GRID
from services.steering.algorithms.pbt import CONDITIONAL_PBT
from shared.bounds import name_issue
from shared.clock import new_id
from shared.domain.models import Segment, Task
from shared.domain.segmentspec import SegmentSpecError, parse_segment_specs
from shared.domain.taskconfig import TaskConfig
from shared.jsonfile import JsonFileError, parse_json
from shared.searchspace import (
    SearchSpace,
    SearchSpaceError,
    parse_search_space,
    parse_segmented,
    to_phpo,
)
from shared.searchspace.initial import initial_points
from shared.store.documents import to_doc

MAIN_SEGMENT = "main"


class SubmissionError(ValueError):
    """A submission that cannot become a task; ``errors`` are FastAPI-style items."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def _error(loc: tuple[object, ...], msg: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": "value_error"}


def _file_names_ok(files: dict[str, str]) -> list[dict[str, Any]]:
    errors = []
    for name in files:
        problem = name_issue(name)
        if problem:
            errors.append(_error(("files", name), f"a file name {problem}"))
    return errors


def _json_file(sub: TaskSubmission, option: str, name: str) -> tuple[object, tuple[object, ...]]:
    """The decoded content of the submitted file that config option ``option`` names."""
    if name not in sub.files:
        raise SubmissionError(
            [_error(("files", name), f"config.{option} names a file that was not sent")]
        )
    try:
        return parse_json(sub.files[name]), ("files", name)
    except JsonFileError as exc:
        raise SubmissionError([_error(("files", name), f"not valid JSON: {exc}")]) from None


def _search_space_source(sub: TaskSubmission) -> tuple[object, tuple[object, ...]]:
    if sub.search_space is not None:
        return sub.search_space, ("searchSpace",)
    name = sub.config.searchSpaceFile
    if not name:
        raise SubmissionError(
            [_error(("searchSpace",), "give searchSpace or config.searchSpaceFile")]
        )
    return _json_file(sub, "searchSpaceFile", name)


def _segments_of(sub: TaskSubmission) -> list[tuple[str, list[str], list[str]]]:
    """(name, training files, datasets) of every segment: ``main`` alone when unsegmented."""
    name = sub.config.segmentSpecFile
    if name is None:
        return [(MAIN_SEGMENT, [], [])]
    raw, where = _json_file(sub, "segmentSpecFile", name)
    try:
        specs = parse_segment_specs(raw)
    except SegmentSpecError as exc:
        raise SubmissionError([_error((*where, *loc), msg) for loc, msg in exc.issues]) from None
    return [(spec.name, spec.files, spec.datasets) for spec in specs]


def written_form(raw: object) -> Literal["phpo", "idds"]:
    """iDDS entries carry ``type``, phpo entries ``method``."""
    if (
        isinstance(raw, dict)
        and raw
        and all(isinstance(v, dict) and "type" in v for v in raw.values())
    ):
        return "idds"
    return "phpo"


def build_task(
    sub: TaskSubmission, owner: str, *, max_files_bytes: int
) -> tuple[Task, list[Segment]]:
    """The task and its segments: one ``main`` segment, or one per entry of the
    ``segmentSpecFile``, each with its own search space (a list of spaces in segment
    order, or one space cloned for every segment)."""
    errors = _file_names_ok(sub.files)
    size = sum(len(v.encode()) for v in sub.files.values())
    if size > max_files_bytes:
        errors.append(_error(("files",), f"{size} bytes of files; the limit is {max_files_bytes}"))
    if errors:
        raise SubmissionError(errors)
    named = _segments_of(sub)
    raw, where = _search_space_source(sub)
    try:
        spaces = (
            parse_segmented(raw, len(named)) if sub.config.segmented else [parse_search_space(raw)]
        )
    except SearchSpaceError as exc:
        raise SubmissionError([_error((*where, *e.loc), e.msg) for e in exc.issues]) from None
    if sub.config.steering.algorithm == "grid" and any(s.conditional for s in spaces):
        raise SubmissionError([_error(("config", "steering", "algorithm"), CONDITIONAL_GRID)])
    if sub.config.steering.algorithm == "pbt" and any(s.conditional for s in spaces):
        raise SubmissionError([_error(("config", "steering", "algorithm"), CONDITIONAL_PBT)])
    initial = _initial_points(sub.config, spaces)
    raws = raw if isinstance(raw, list) else [raw] * len(named)
    name = sub.name or (sub.config.outDS or "").rstrip("/")
    task = Task(
        id=new_id("task_"),
        owner=owner,
        name=name,
        config=sub.config,
        files=sub.files,
        jobs_counted=0,
    )
    segments = [
        Segment(
            id=f"{task.id}.{name}",
            task_id=task.id,
            name=name,
            index=index,
            search_space=to_phpo(space),
            space_form=written_form(written),
            files=files,
            datasets=datasets,
            initial_points=points,
        )
        for index, ((name, files, datasets), space, written, points) in enumerate(
            zip(named, spaces, raws, initial, strict=True)
        )
    ]
    _check_storable(task, segments)
    return task, segments


def _initial_points(config: TaskConfig, spaces: list[SearchSpace]) -> list[list[dict[str, Any]]]:
    """Each segment's initial points; a 422 naming the entry and parameter of each that
    does not fit a segment's space, or when there are more than ``maxPoints``."""
    where = ("config", "initialPoints")
    result: list[list[dict[str, Any]]] = []
    for index, space in enumerate(spaces):
        try:
            points = initial_points(space, config.initialPoints)
        except SearchSpaceError as exc:
            segment = () if len(spaces) == 1 else (f"segment {index}",)
            errors = [_error((*where, *e.loc), " ".join((*segment, e.msg))) for e in exc.issues]
            raise SubmissionError(errors) from None
        if len(points) > config.maxPoints:
            defaults = (
                " (one is the point of the space's defaults)"
                if len(points) > len(config.initialPoints)
                else ""
            )
            raise SubmissionError(
                [
                    _error(
                        where,
                        f"{len(points)} initial points{defaults} but maxPoints is "
                        f"{config.maxPoints}: initial points count against maxPoints",
                    )
                ]
            )
        result.append(points)
    return result


def _check_storable(task: Task, segments: list[Segment]) -> None:
    """The last check before any write: every record encodes as a database document.
    The bounds on each field make this pass; should one be missed, the submission is
    refused here instead of failing between the writes of its segments and its task."""
    for record in (*segments, task):
        try:
            encode(to_doc(record))
        except (InvalidDocument, OverflowError, ValueError) as exc:
            raise SubmissionError([_error((), f"cannot be stored: {exc}")]) from None
