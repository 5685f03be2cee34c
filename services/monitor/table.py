"""The points table: server-side filter, sort and cursor pages over a snapshot (pure).

A filter is a comma-separated list of clauses ``field op value`` (``loss<0.1``,
``status=failed``, ``lr>=1e-3``, ``optimizer=adam``); fields are ``loss`` (``loss1``,
``loss2``... for further objectives), ``index``, ``attempts``, ``status``, ``segment``
and the parameter names. A sort is a field, ``-`` first for descending; rows without a
value come last either way.

A cursor names the last row a page showed by its sort key and row, so the next page
starts right after it even when points arrived meanwhile (offsets would shift).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.monitor.snapshot import STATUS_CODE, FloatArray, IntArray, TaskSnapshot

PAGE_LIMIT = 500
_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$")
_OPS = {
    "=": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}
MAX_CLAUSES = 20
AFTER_EVERY_ROW = 2**62
"""A cursor's row that sorts after every real row: resume after the cursor's key."""


class TableQueryError(ValueError):
    """A filter, sort or cursor the table cannot use; ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Page:
    rows: IntArray
    total: int
    """Rows that pass the filter."""
    next_cursor: str | None


def _column(snap: TaskSnapshot, name: str, where: str) -> FloatArray:
    loss = re.fullmatch(r"loss(\d*)", name)
    if loss:
        objective = int(loss.group(1) or 0)
        if objective >= snap.objectives:
            raise TableQueryError(where, f"{name}: the task has {snap.objectives} objective(s)")
        column: FloatArray = snap.loss[:, objective]
        return column
    if name in ("index", "attempts", "status", "segment", "created", "evaluated"):
        return snap.col(name).astype(np.float64)
    if name in snap.params:
        return snap.values(name)
    known = ", ".join(["loss", "index", "attempts", "status", "segment", *snap.params])
    raise TableQueryError(where, f"unknown field {name!r}; known: {known}")


def _operand(snap: TaskSnapshot, name: str, text: str, where: str) -> float:
    if name == "status":
        if text not in STATUS_CODE:
            raise TableQueryError(where, f"status is one of {', '.join(STATUS_CODE)}")
        return float(STATUS_CODE[text])
    if name == "segment":
        code = snap.segment_code(text)
        return math.nan if code is None else float(code)
    column = snap.params.get(name)
    if column is not None and column.categorical:
        for code, label in enumerate(column.labels):
            if str(label) == text or json.dumps(label) == text:
                return float(code)
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise TableQueryError(where, f"{name}: {text!r} is not a number") from None


def mask(snap: TaskSnapshot, text: str) -> npt.NDArray[np.bool_]:
    """The rows that pass every clause of ``text``."""
    keep = np.ones(snap.rows, dtype=bool)
    clauses = [c for c in text.split(",") if c.strip()]
    if len(clauses) > MAX_CLAUSES:
        raise TableQueryError("filter", f"at most {MAX_CLAUSES} clauses")
    for clause in clauses:
        found = _CLAUSE.match(clause)
        if not found:
            raise TableQueryError(
                "filter", f"{clause.strip()!r} is not `field op value` (op: = != < <= > >=)"
            )
        name, op, value = found.groups()
        column = _column(snap, name, "filter")
        operand = _operand(snap, name, value, "filter")
        with np.errstate(invalid="ignore"):
            keep &= _OPS[op](column, operand)
    return keep


def _sort_key(snap: TaskSnapshot, sort: str) -> FloatArray:
    descending = sort.startswith("-")
    key = _column(snap, sort.lstrip("-") or "index", "sort")
    key = -key if descending else key
    return np.where(np.isnan(key), np.inf, key)


def encode_cursor(key: float, row: int) -> str:
    raw = json.dumps([repr(float(key)), int(row)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key, row = json.loads(raw)
        return float(key), int(row)
    except (ValueError, TypeError):
        raise TableQueryError("cursor", "not a cursor this table gave out") from None


def page(
    snap: TaskSnapshot,
    *,
    sort: str = "index",
    filter_text: str = "",
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """One page of rows in sort order, after ``cursor`` (the start when None)."""
    if not 1 <= limit <= PAGE_LIMIT:
        raise TableQueryError("limit", f"limit is between 1 and {PAGE_LIMIT}")
    chosen = np.flatnonzero(mask(snap, filter_text))
    key = _sort_key(snap, sort)[chosen]
    order = np.lexsort((chosen, key))
    keys, rows = key[order], chosen[order]
    start = 0
    if cursor:
        last_key, last_row = decode_cursor(cursor)
        low = int(np.searchsorted(keys, last_key, side="left"))
        high = int(np.searchsorted(keys, last_key, side="right"))
        start = low + int(np.searchsorted(rows[low:high], last_row, side="right"))
    picked = rows[start : start + limit]
    after = start + len(picked)
    next_cursor = None
    if after < len(rows) and len(picked):
        next_cursor = encode_cursor(float(keys[after - 1]), int(rows[after - 1]))
    return Page(rows=picked, total=len(rows), next_cursor=next_cursor)
