"""From a submission to the records of a new task (pure: validation and construction)."""

from __future__ import annotations

from typing import Any, Literal

from services.api.schemas import TaskSubmission
from shared.clock import new_id
from shared.domain.models import Segment, Task
from shared.searchspace import SearchSpaceError, parse_search_space, to_phpo

MAIN_SEGMENT = "main"


class SubmissionError(ValueError):
    """A submission that cannot become a task; ``errors`` are FastAPI-style items."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def _error(loc: tuple[object, ...], msg: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": "value_error"}


def _file_names_ok(files: dict[str, str]) -> list[dict[str, Any]]:
    return [
        _error(("files", name), "file names must be plain names without directories")
        for name in files
        if not name or "/" in name or "\\" in name or name in (".", "..")
    ]


def _search_space_source(sub: TaskSubmission) -> tuple[object, tuple[object, ...]]:
    import json

    if sub.search_space is not None:
        return sub.search_space, ("searchSpace",)
    name = sub.config.searchSpaceFile
    if not name:
        raise SubmissionError(
            [_error(("searchSpace",), "give searchSpace or config.searchSpaceFile")]
        )
    if name not in sub.files:
        raise SubmissionError(
            [_error(("files", name), "config.searchSpaceFile names a file that was not sent")]
        )
    try:
        return json.loads(sub.files[name]), ("files", name)
    except json.JSONDecodeError as exc:
        raise SubmissionError([_error(("files", name), f"not valid JSON: {exc}")]) from None


def written_form(raw: object) -> Literal["phpo", "idds"]:
    """iDDS entries carry ``type``, phpo entries ``method``."""
    if (
        isinstance(raw, dict)
        and raw
        and all(isinstance(v, dict) and "type" in v for v in raw.values())
    ):
        return "idds"
    return "phpo"


def build_task(sub: TaskSubmission, owner: str, *, max_files_bytes: int) -> tuple[Task, Segment]:
    errors = _file_names_ok(sub.files)
    size = sum(len(v.encode()) for v in sub.files.values())
    if size > max_files_bytes:
        errors.append(_error(("files",), f"{size} bytes of files; the limit is {max_files_bytes}"))
    if errors:
        raise SubmissionError(errors)
    raw, where = _search_space_source(sub)
    try:
        space = parse_search_space(raw)
    except SearchSpaceError as exc:
        raise SubmissionError([_error((*where, *e.loc), e.msg) for e in exc.issues]) from None
    task = Task(id=new_id("task_"), owner=owner, name=sub.name, config=sub.config, files=sub.files)
    segment = Segment(
        id=f"{task.id}.{MAIN_SEGMENT}",
        task_id=task.id,
        name=MAIN_SEGMENT,
        index=0,
        search_space=to_phpo(space),
        space_form=written_form(raw),
    )
    return task, segment
