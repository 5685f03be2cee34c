"""Bounds on what users and sites may send: sizes a record can store and a parser can
read in bounded time.

MongoDB stores integers in at most 8 bytes and cannot store a key holding a NUL byte;
JSON replies cannot hold NaN or Infinity. A value outside these bounds must be refused
where it enters (a 422 naming the field), not when a write or a reply fails later.
:func:`json_issues` checks a free-form JSON value (optimiser arguments, study
properties) without recursion, so a deeply nested value costs its size, not the stack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, TypeAlias

from pydantic import Field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A non-negative integer that is stored (a generation, a size, a sequence number)."""

MAX_JSON_DEPTH = 32
"""Nesting of free-form values: optimiser arguments and study properties are flat or
nearly so; anything deeper is a mistake or an attack on a recursive reader."""

MAX_NAME = 255
"""Longest file name, as most file systems allow."""

Loc: TypeAlias = tuple[str | int, ...]


def int64_issue(value: int) -> str | None:
    if INT64_MIN <= value <= INT64_MAX:
        return None
    return "must fit in 8 bytes (between -2**63 and 2**63-1)"


def json_issues(
    value: object, loc: Loc = (), *, max_depth: int = MAX_JSON_DEPTH
) -> list[tuple[Loc, str]]:
    """Where ``value`` (decoded JSON) cannot be stored or sent back, and why: integers
    beyond 8 bytes, NaN or infinite numbers, keys that are not strings or hold a NUL
    byte, nesting deeper than ``max_depth``. Empty when it is fine."""
    issues: list[tuple[Loc, str]] = []
    stack: list[tuple[object, Loc, int]] = [(value, loc, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int):
            problem = int64_issue(item)
            if problem:
                issues.append((where, problem))
        elif isinstance(item, float):
            if not math.isfinite(item):
                issues.append((where, f"must be a finite number, got {item}"))
        elif isinstance(item, Mapping | list | tuple):
            if depth >= max_depth:
                issues.append((where, f"nested deeper than {max_depth} levels"))
                continue
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if not isinstance(key, str):
                        issues.append((where, f"keys must be strings, got {key!r}"))
                    elif "\0" in key:
                        issues.append(((*where, key), "names must not contain a NUL byte"))
                    else:
                        stack.append((child, (*where, key), depth + 1))
            else:
                stack.extend((child, (*where, i), depth + 1) for i, child in enumerate(item))
        else:
            issues.append((where, f"not a JSON value: {type(item).__name__}"))
    return issues


def check_json(value: object, what: str) -> None:
    """Raise ``ValueError`` naming the first place where ``value`` cannot be stored; for
    pydantic validators, whose error then names the field."""
    issues = json_issues(value)
    if issues:
        where, msg = issues[0]
        path = ".".join(str(part) for part in where)
        raise ValueError(f"{what}{'.' + path if path else ''}: {msg}")


def name_issue(name: str) -> str | None:
    """Why ``name`` cannot be a plain file name in a work directory; None if it can."""
    if not name or name in (".", ".."):
        return "must be a file name, not empty, '.' or '..'"
    if "/" in name or "\\" in name:
        return "must be a plain name without directories"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "must not contain control characters (NUL, newline, ...)"
    if len(name.encode()) > MAX_NAME:
        return f"is longer than {MAX_NAME} bytes"
    return None
