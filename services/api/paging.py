"""Cursors of the paginated listings: opaque to clients, validated like any input.

A listing answers one page and, when there may be more, a ``Link: <...>; rel="next"``
header (RFC 8288) and ``X-Next-Cursor`` with the cursor of the next page. The cursor
encodes where the page ended and in which order, so one taken from a listing in
another order is refused (422 naming ``cursor``) instead of giving a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Query, Request, Response, status
from pydantic import BaseModel

from shared.domain.paging import DEFAULT_PAGE, MAX_PAGE, PageKey, PageRequest, SortValue

MAX_CURSOR = 1_024
T = TypeVar("T")


class _Cursor(BaseModel):
    f: str
    """The sort field the cursor belongs to."""
    k: str
    """The type of the value: int, float or time."""
    v: Any
    id: str


def _refuse(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["query", "cursor"], "msg": detail, "type": "value_error"}],
    )


def encode_cursor(field: str, key: PageKey) -> str:
    value: Any
    if isinstance(key.value, datetime):
        kind, value = "time", key.value.isoformat()
    elif isinstance(key.value, bool) or not isinstance(key.value, int | float):
        raise TypeError(f"cannot page on {type(key.value).__name__}")
    else:
        kind, value = ("int" if isinstance(key.value, int) else "float"), key.value
    raw = json.dumps({"f": field, "k": kind, "v": value, "id": key.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(field: str, cursor: str) -> PageKey:
    """The key a cursor carries; a 422 naming ``cursor`` for anything else."""
    if len(cursor) > MAX_CURSOR:
        raise _refuse(f"at most {MAX_CURSOR} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parsed = _Cursor.model_validate_json(raw)
    except (binascii.Error, ValueError):
        raise _refuse("not a cursor this listing gave out") from None
    if parsed.f != field:
        raise _refuse(f"a cursor of a listing ordered by {parsed.f}, not {field}")
    value: SortValue
    try:
        if parsed.k == "time":
            value = datetime.fromisoformat(str(parsed.v))
        elif parsed.k == "int" and isinstance(parsed.v, int) and not isinstance(parsed.v, bool):
            value = parsed.v
        elif parsed.k == "float" and isinstance(parsed.v, int | float):
            value = float(parsed.v)
            if not math.isfinite(value):
                raise ValueError
        else:
            raise ValueError
    except ValueError:
        raise _refuse("not a cursor this listing gave out") from None
    if not parsed.id or len(parsed.id) > 256:
        raise _refuse("not a cursor this listing gave out")
    return PageKey(value=value, id=parsed.id)


class PageQuery(BaseModel):
    limit: int
    cursor: str | None
    descending: bool


def page_query(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR)] = None,
    descending: bool = False,
) -> PageQuery:
    return PageQuery(limit=limit, cursor=cursor, descending=descending)


def page_request(field: str, query: PageQuery) -> PageRequest:
    after = decode_cursor(field, query.cursor) if query.cursor else None
    return PageRequest(limit=query.limit, after=after, descending=query.descending)


def link_next(
    request: Request,
    response: Response,
    field: str,
    query: PageQuery,
    items: Sequence[T],
    key_of: Callable[[T], PageKey],
) -> None:
    """Say where the next page starts when this one (``items``) was full."""
    if len(items) < query.limit:
        return
    cursor = encode_cursor(field, key_of(items[-1]))
    url = request.url.include_query_params(cursor=cursor, limit=query.limit)
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    response.headers["X-Next-Cursor"] = cursor
