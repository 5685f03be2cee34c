"""Keyset pages of a listing: the order, the filters and where the last page ended.

A page never skips or repeats a record when others are added while a client pages
through: each page starts strictly after the sort key of the last record of the one
before (``after``), with the record's id breaking ties, so a page costs one indexed
range read however deep into the listing it is (no offsets).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

MAX_PAGE = 10_000
"""The most records one page may hold."""
DEFAULT_PAGE = 1_000


class PointOrder(StrEnum):
    INDEX = "index"
    """Generation order (the point's index in its segment, then its id)."""
    LOSS = "loss"
    """Best first for ``min`` tasks: only points with a scalar loss are listed."""


SortValue = int | float | str | datetime


@dataclass(frozen=True)
class PageKey:
    """The sort key and id of the last record of a page: the next starts after it."""

    value: SortValue
    id: str


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_PAGE
    after: PageKey | None = None
    descending: bool = False
