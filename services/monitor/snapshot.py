"""A task's points held by the monitor in columns, so that 100k points cost megabytes.

The monitor reads a task's points once, then only what changed (new points, and the
open ones it already knows, which are the only ones that still change: a point that is
evaluated or failed is final). Every series, page and count the dashboard asks for is
computed from these columns with NumPy, never by asking the database again.

Pure: no I/O. :mod:`services.monitor.reads` fetches the documents it is fed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.domain.models import PointStatus

STATUSES = (
    PointStatus.UNEVALUATED,
    PointStatus.PENDING,
    PointStatus.EVALUATED,
    PointStatus.FAILED,
)
STATUS_CODE = {s.value: code for code, s in enumerate(STATUSES)}
OPEN_CODES = (0, 1)
EVALUATED, FAILED = 2, 3
PART_SIZE = 5000
"""Indices per stored part (:mod:`services.monitor.columns`): a part that still grows is
rewritten whole, so this bounds what one result costs to keep."""
NUMERIC = ("index", "status", "attempts", "preemptions", "pruned", "created", "evaluated")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _epoch(value: object) -> float:
    return value.timestamp() if isinstance(value, datetime) else math.nan


def _number(value: object) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return math.nan


class _Grow:
    """A NumPy column that grows by doubling, so appending one row is amortised O(1)."""

    def __init__(self, dtype: type, fill: float | int, width: int | None = None) -> None:
        self.fill = fill
        shape: tuple[int, ...] = (16,) if width is None else (16, width)
        self.data: npt.NDArray[Any] = np.full(shape, fill, dtype=dtype)

    def ensure(self, rows: int) -> None:
        if rows <= len(self.data):
            return
        size = max(rows, 2 * len(self.data))
        grown = np.full((size, *self.data.shape[1:]), self.fill, dtype=self.data.dtype)
        grown[: len(self.data)] = self.data
        self.data = grown


@dataclass
class ParamColumn:
    """One hyperparameter: numbers as floats, anything else as codes into ``labels``."""

    name: str
    categorical: bool
    labels: list[Any] = field(default_factory=list)
    _codes: dict[str, int] = field(default_factory=dict)

    def encode(self, value: object) -> float:
        if not self.categorical:
            return _number(value)
        key = repr(value)
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = len(self.labels)
            self.labels.append(value)
        return float(code)

    def decode(self, value: float) -> object:
        if math.isnan(value):
            return None
        return self.labels[int(value)] if self.categorical else value


class TaskSnapshot:
    """The points of one task, one row each, in the order the monitor first saw them."""

    def __init__(self, objectives: int, categorical: Iterable[str] = ()) -> None:
        self.objectives = max(1, objectives)
        self.categorical = set(categorical)
        self.rows = 0
        self.version = 0
        """Bumped by every :meth:`apply` that changed something: the key of every
        cached series."""
        self.ids: list[str] = []
        self.segments: list[str] = []
        self.job_ids: list[str | None] = []
        self.errors: list[str] = []
        self.curves: dict[int, tuple[IntArray, FloatArray]] = {}
        self.params: dict[str, ParamColumn] = {}
        self._row_of: dict[str, int] = {}
        self._segment_code: dict[str, int] = {}
        self._next_index: dict[str, int] = {}
        self._open: set[int] = set()
        self.dirty: set[tuple[str, int]] = set()
        """The (segment, part) of every row changed since :meth:`clean` (the parts the
        stored snapshot lacks)."""
        self._cols: dict[str, _Grow] = {
            "segment": _Grow(np.int64, -1),
            "index": _Grow(np.int64, -1),
            "status": _Grow(np.int64, 0),
            "attempts": _Grow(np.int64, 0),
            "preemptions": _Grow(np.int64, 0),
            "pruned": _Grow(np.int64, -1),
            "created": _Grow(np.float64, math.nan),
            "evaluated": _Grow(np.float64, math.nan),
        }
        self._loss = _Grow(np.float64, math.nan, width=self.objectives)
        self._values: dict[str, _Grow] = {}

    # columns, trimmed to the rows in use
    def col(self, name: str) -> npt.NDArray[Any]:
        return self._cols[name].data[: self.rows]

    @property
    def loss(self) -> FloatArray:
        data: FloatArray = self._loss.data[: self.rows]
        return data

    def values(self, param: str) -> FloatArray:
        data: FloatArray = self._values[param].data[: self.rows]
        return data

    def segment_code(self, name: str) -> int | None:
        return self._segment_code.get(name)

    def segment_names(self) -> list[str]:
        return list(self._segment_code)

    def next_index(self, segment: str) -> int:
        """The first index of ``segment`` this snapshot has not seen."""
        return self._next_index.get(segment, 0)

    def open_indices(self) -> dict[str, list[int]]:
        """The indices, per segment, of the points that may still change."""
        found: dict[str, list[int]] = {}
        index = self.col("index")
        for row in sorted(self._open):
            found.setdefault(self.segments[row], []).append(int(index[row]))
        return found

    def row_of(self, point_id: str) -> int | None:
        return self._row_of.get(point_id)

    def clean(self) -> set[tuple[str, int]]:
        """The dirty parts, forgotten here (their caller stores them)."""
        dirty, self.dirty = self.dirty, set()
        return dirty

    def rewind(self, segment: str, next_index: int) -> None:
        """Say that the points of ``segment`` from ``next_index`` on are not all known
        (a stored part held fewer than its successors): the next read starts there."""
        self._next_index[segment] = min(self.next_index(segment), next_index)

    def part_rows(self, segment: str, part: int) -> IntArray:
        """The rows of ``segment`` whose index lies in stored part ``part``, by index."""
        code = self._segment_code.get(segment)
        index = self.col("index")
        lo = part * PART_SIZE
        rows = np.flatnonzero(
            (self.col("segment") == code) & (index >= lo) & (index < lo + PART_SIZE)
        )
        ordered: IntArray = rows[np.argsort(index[rows], kind="stable")]
        return ordered

    def add_rows(
        self,
        segment: str,
        ids: list[str],
        numeric: Mapping[str, npt.NDArray[Any]],
        loss: FloatArray,
        params: Mapping[str, tuple[FloatArray, list[Any] | None]],
        strings: Mapping[str, list[Any]],
        curves: Mapping[int, tuple[IntArray, FloatArray]],
    ) -> None:
        """Append rows taken from a stored part (no row of theirs may be known yet):
        ``params`` maps a name to its values and, if categorical, the labels the values
        are codes into; ``curves`` is keyed by position among the new rows."""
        n = len(ids)
        if n == 0:
            return
        start = self.rows
        self.rows += n
        for grow in (*self._cols.values(), self._loss, *self._values.values()):
            grow.ensure(self.rows)
        code = self._segment_code.setdefault(segment, len(self._segment_code))
        self._cols["segment"].data[start : self.rows] = code
        for name in NUMERIC:
            self._cols[name].data[start : self.rows] = numeric[name]
        k = min(self.objectives, loss.shape[1]) if loss.ndim == 2 else 0
        self._loss.data[start : self.rows, :k] = loss[:, :k]
        for name, (values, labels) in params.items():
            self._param(name).ensure(self.rows)
            column = self.params[name]
            if labels is not None and column.categorical:
                mapping = np.array([column.encode(v) for v in labels] + [math.nan])
                codes = np.where(np.isnan(values), len(labels), values).astype(np.int64)
                values = mapping[codes]
            self._values[name].data[start : self.rows] = values
        self.ids.extend(ids)
        self.segments.extend([segment] * n)
        self.job_ids.extend(strings["job_ids"])
        self.errors.extend(strings["errors"])
        self._row_of.update(zip(ids, range(start, self.rows), strict=True))
        for pos, curve in curves.items():
            self.curves[start + pos] = curve
        index = numeric["index"]
        self._next_index[segment] = max(self.next_index(segment), int(index.max()) + 1)
        status = numeric["status"]
        self._open.update((start + np.flatnonzero(status <= max(OPEN_CODES))).tolist())
        self.version += 1

    def apply(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Take point documents in (new or changed); returns how many rows changed."""
        changed = 0
        for doc in docs:
            if self._apply_one(doc):
                changed += 1
        if changed:
            self.version += 1
        return changed

    def _apply_one(self, doc: Mapping[str, Any]) -> bool:
        point_id = str(doc["_id"])
        row = self._row_of.get(point_id)
        status = STATUS_CODE.get(str(doc.get("status")), 0)
        if row is None:
            row = self._add_row(point_id, doc)
        else:
            index = int(self._cols["index"].data[row])
            segment = self.segments[row]
            self._next_index[segment] = max(self.next_index(segment), index + 1)
            if not self._differs(row, doc, status):
                return False
        self._fill(row, doc, status)
        self.dirty.add((self.segments[row], int(self._cols["index"].data[row]) // PART_SIZE))
        return True

    def _add_row(self, point_id: str, doc: Mapping[str, Any]) -> int:
        row = self.rows
        self.rows += 1
        for grow in (*self._cols.values(), self._loss, *self._values.values()):
            grow.ensure(self.rows)
        segment = str(doc.get("segment", "main"))
        code = self._segment_code.setdefault(segment, len(self._segment_code))
        index = int(doc.get("index", 0))
        self._next_index[segment] = max(self._next_index.get(segment, 0), index + 1)
        self._row_of[point_id] = row
        self.ids.append(point_id)
        self.segments.append(segment)
        self.job_ids.append(None)
        self.errors.append("")
        self._cols["segment"].data[row] = code
        self._cols["index"].data[row] = index
        self._cols["created"].data[row] = _epoch(doc.get("created"))
        for name, value in (doc.get("params") or {}).items():
            self._param(name).ensure(self.rows)
            self._values[name].data[row] = self.params[name].encode(value)
        return row

    def _param(self, name: str) -> _Grow:
        if name not in self._values:
            self.params[name] = ParamColumn(name, categorical=name in self.categorical)
            self._values[name] = _Grow(np.float64, math.nan)
        return self._values[name]

    def _differs(self, row: int, doc: Mapping[str, Any], status: int) -> bool:
        cols = self._cols
        return (
            int(cols["status"].data[row]) != status
            or int(cols["attempts"].data[row]) != int(doc.get("attempts") or 0)
            or self.job_ids[row] != doc.get("job_id")
            or len(doc.get("intermediate") or {}) != len(self.curves.get(row, ((), ()))[0])
        )

    def _fill(self, row: int, doc: Mapping[str, Any], status: int) -> None:
        cols = self._cols
        cols["status"].data[row] = status
        cols["attempts"].data[row] = int(doc.get("attempts") or 0)
        cols["preemptions"].data[row] = int(doc.get("preemptions") or 0)
        pruned = doc.get("pruned_step")
        cols["pruned"].data[row] = -1 if pruned is None else int(pruned)
        cols["evaluated"].data[row] = _epoch(doc.get("evaluated"))
        self._loss.data[row] = self._losses(doc.get("loss"))
        self.job_ids[row] = doc.get("job_id")
        self.errors[row] = str(doc.get("last_error") or "")
        raw = doc.get("intermediate") or {}
        if raw:
            steps = sorted((int(k), float(v)) for k, v in raw.items())
            self.curves[row] = (
                np.array([s for s, _ in steps], dtype=np.int64),
                np.array([v for _, v in steps], dtype=np.float64),
            )
        if status in OPEN_CODES:
            self._open.add(row)
        else:
            self._open.discard(row)

    def _losses(self, loss: object) -> list[float]:
        values = loss if isinstance(loss, list) else [loss]
        numbers = [_number(v) for v in values][: self.objectives]
        return numbers + [math.nan] * (self.objectives - len(numbers))

    def counts(self, segment: str | None = None) -> dict[str, int]:
        """Points per status, of one segment or of all."""
        status = self.col("status")
        if segment is not None:
            code = self._segment_code.get(segment)
            status = status[self.col("segment") == code] if code is not None else status[:0]
        tally = np.bincount(status, minlength=len(STATUSES))
        return {s.value: int(tally[i]) for i, s in enumerate(STATUSES)}
