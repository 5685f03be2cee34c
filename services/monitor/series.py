"""The chart series of a task page, computed from a :class:`TaskSnapshot` (pure NumPy).

The browser never receives a whole task: a history is cut into buckets that each keep
their lowest and highest loss, plus every point that improved the best so far (so the
best-so-far line and the extremes are exact at any zoom); slice plots and parallel
coordinates get a sample that always holds the best points. Each function is bounded
by its ``limit`` whatever the task's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.monitor.snapshot import EVALUATED, FloatArray, IntArray, TaskSnapshot

HISTORY_LIMIT = 2000
WINDOW_LIMIT = 1000
"""Markers of a zoomed window's re-cut: it is drawn again at every zoom, and a tenth of
the history then shows five times the markers it had in the whole."""
SAMPLE_LIMIT = 2000
PARALLEL_LIMIT = 1000
CURVE_LIMIT = 100
CURVE_STEPS = 200
BEST_SHARE = 0.1
"""Of a sample, the share given to the best points; the rest is drawn at random."""


@dataclass(frozen=True)
class Selection:
    """The evaluated rows of one segment, in index order, and their objective."""

    rows: IntArray
    x: IntArray
    y: FloatArray
    complete: npt.NDArray[np.bool_]
    """Not pruned: only these compete for the best (as in Optuna)."""
    sign: float
    """+1 when minimising, -1 when maximising: ``sign * y`` is a cost."""


def select(snap: TaskSnapshot, segment: str, objective: int, maximize: bool) -> Selection:
    code = snap.segment_code(segment)
    rows = np.flatnonzero(
        (snap.col("segment") == code)
        & (snap.col("status") == EVALUATED)
        & np.isfinite(snap.loss[:, objective])
    )
    x = snap.col("index")[rows]
    order = np.argsort(x, kind="stable")
    rows, x = rows[order], x[order]
    return Selection(
        rows=rows,
        x=x,
        y=snap.loss[rows, objective],
        complete=snap.col("pruned")[rows] < 0,
        sign=-1.0 if maximize else 1.0,
    )


def best_so_far(sel: Selection) -> tuple[IntArray, FloatArray]:
    """The points where the best so far improved: the steps of the best-so-far line."""
    cost = np.where(sel.complete, sel.sign * sel.y, np.inf)
    if len(cost) == 0:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    running = np.minimum.accumulate(cost)
    previous = np.concatenate(([np.inf], running[:-1]))
    improved = np.flatnonzero(running < previous)
    return improved, sel.sign * running[improved]


def _bucket_extremes(y: FloatArray, buckets: int) -> IntArray:
    """Positions of the lowest and the highest value of each of ``buckets`` equal runs."""
    n = len(y)
    size = math.ceil(n / buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    grid = padded.reshape(buckets, size)
    valid = ~np.all(np.isnan(grid), axis=1)
    starts = np.arange(buckets) * size
    low = starts + np.nanargmin(np.where(np.isnan(grid), np.inf, grid), axis=1)
    high = starts + np.nanargmax(np.where(np.isnan(grid), -np.inf, grid), axis=1)
    picked: IntArray = np.unique(np.concatenate((low[valid], high[valid])))
    return picked[picked < n]


def history(
    snap: TaskSnapshot,
    segment: str,
    *,
    objective: int = 0,
    maximize: bool = False,
    x_range: tuple[float, float] | None = None,
    limit: int | None = None,
) -> dict[str, object]:
    """Loss by point index, at most about ``limit`` markers (:data:`HISTORY_LIMIT`, or
    :data:`WINDOW_LIMIT` for a window), with the best-so-far line.

    ``x_range`` (a zoom) re-cuts the buckets inside the window, so detail appears as
    the user zooms in; the best-so-far line is the whole segment's, clipped.
    """
    if limit is None:
        limit = HISTORY_LIMIT if x_range is None else WINDOW_LIMIT
    sel = select(snap, segment, objective, maximize)
    steps, best = best_so_far(sel)
    window = np.ones(len(sel.x), dtype=bool)
    if x_range is not None:
        window = (sel.x >= x_range[0]) & (sel.x <= x_range[1])
    inside = np.flatnonzero(window)
    if len(inside) > limit:
        keep = inside[_bucket_extremes(sel.y[inside], max(1, limit // 2))]
        keep = np.union1d(keep, steps[window[steps]])
    else:
        keep = inside
    best_x = sel.x[steps].tolist()
    best_y = best.tolist()
    if best_x:
        best_x.append(int(sel.x[-1]))
        best_y.append(best_y[-1])
    return {
        "segment": segment,
        "objective": objective,
        "total": len(sel.x),
        "in_window": len(inside),
        "x": sel.x[keep].tolist(),
        "y": sel.y[keep].tolist(),
        "ids": [snap.ids[r] for r in sel.rows[keep]],
        "pruned": (~sel.complete[keep]).tolist(),
        "best_x": best_x,
        "best_y": best_y,
    }


def sample_rows(sel: Selection, limit: int) -> IntArray:
    """At most ``limit`` positions of ``sel``: the best tenth, then a seeded draw."""
    n = len(sel.rows)
    if n <= limit:
        return np.arange(n)
    cost = np.where(sel.complete, sel.sign * sel.y, np.inf)
    best = np.argsort(cost, kind="stable")[: int(limit * BEST_SHARE)]
    rest = np.setdiff1d(np.arange(n), best)
    drawn = np.random.default_rng(0).choice(rest, size=limit - len(best), replace=False)
    picked: IntArray = np.sort(np.concatenate((best, drawn)))
    return picked


def _param_axis(snap: TaskSnapshot, name: str, rows: IntArray, log: bool) -> dict[str, object]:
    column = snap.params[name]
    raw = snap.values(name)[rows]
    axis: dict[str, object] = {"name": name, "categorical": column.categorical, "log": log}
    if column.categorical:
        axis["labels"] = [str(v) for v in column.labels]
    axis["values"] = [None if math.isnan(v) else v for v in raw.tolist()]
    return axis


def slices(
    snap: TaskSnapshot,
    segment: str,
    *,
    objective: int = 0,
    maximize: bool = False,
    limit: int = SAMPLE_LIMIT,
    log_params: frozenset[str] = frozenset(),
) -> dict[str, object]:
    """Each parameter against the loss, on one shared sample of the evaluated points;
    ``log_params`` are drawn on a log scale (their search space says so)."""
    sel = select(snap, segment, objective, maximize)
    picked = sample_rows(sel, limit)
    rows = sel.rows[picked]
    return {
        "segment": segment,
        "total": len(sel.rows),
        "loss": sel.y[picked].tolist(),
        "index": sel.x[picked].tolist(),
        "params": [_param_axis(snap, name, rows, name in log_params) for name in snap.params],
    }


def parallel(
    snap: TaskSnapshot,
    segment: str,
    *,
    objective: int = 0,
    maximize: bool = False,
    limit: int = PARALLEL_LIMIT,
    log_params: frozenset[str] = frozenset(),
) -> dict[str, object]:
    """Parallel coordinates: the parameters and the loss of a sample of lines."""
    return slices(
        snap, segment, objective=objective, maximize=maximize, limit=limit, log_params=log_params
    )


def _thin(steps: IntArray, values: FloatArray, limit: int) -> tuple[list[int], list[float]]:
    if len(steps) <= limit:
        return steps.tolist(), values.tolist()
    keep = np.unique(np.concatenate((np.linspace(0, len(steps) - 1, limit).astype(int), [-1])))
    return steps[keep].tolist(), values[keep].tolist()


def intermediates(
    snap: TaskSnapshot, segment: str, *, limit: int = CURVE_LIMIT, steps: int = CURVE_STEPS
) -> dict[str, object]:
    """Learning curves: the best half of ``limit`` by last value, then the newest; each
    thinned to ``steps`` values. Pruned curves carry the step they were stopped at."""
    code = snap.segment_code(segment)
    seg = snap.col("segment")
    rows = [r for r in snap.curves if seg[r] == code]
    last = {r: float(snap.curves[r][1][-1]) for r in rows}
    by_value = sorted(rows, key=lambda r: last[r])[: limit // 2]
    newest = sorted(set(rows) - set(by_value), key=lambda r: -int(snap.col("index")[r]))
    chosen = sorted(by_value + newest[: limit - len(by_value)])
    pruned = snap.col("pruned")
    curves = []
    for row in chosen:
        xs, ys = _thin(*snap.curves[row], steps)
        stop = int(pruned[row])
        curves.append(
            {
                "id": snap.ids[row],
                "index": int(snap.col("index")[row]),
                "steps": xs,
                "values": ys,
                "pruned_step": None if stop < 0 else stop,
            }
        )
    return {
        "segment": segment,
        "total": len(rows),
        "pruned": int(sum(1 for r in rows if pruned[r] >= 0)),
        "curves": curves,
    }


def pareto(
    snap: TaskSnapshot, segment: str, directions: list[str], *, limit: int = SAMPLE_LIMIT
) -> dict[str, object]:
    """The front of a multi-objective segment, and a sample of the dominated points."""
    code = snap.segment_code(segment)
    k = len(directions)
    losses = snap.loss[:, :k]
    rows = np.flatnonzero(
        (snap.col("segment") == code)
        & (snap.col("status") == EVALUATED)
        & np.all(np.isfinite(losses), axis=1)
    )
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    front = rows[nondominated(losses[rows] * signs)]
    others = np.setdiff1d(rows, front)
    if len(others) > limit:
        others = np.sort(np.random.default_rng(0).choice(others, size=limit, replace=False))
    return {
        "segment": segment,
        "directions": directions,
        "total": len(rows),
        "front": _rows(snap, front, k),
        "others": _rows(snap, others, k),
    }


def _rows(snap: TaskSnapshot, rows: IntArray, k: int) -> dict[str, object]:
    return {
        "ids": [snap.ids[r] for r in rows],
        "index": snap.col("index")[rows].tolist(),
        "loss": snap.loss[rows, :k].tolist(),
    }


def nondominated(cost: FloatArray) -> IntArray:
    """Positions of the rows of ``cost`` (to minimise) that no other row dominates.

    Equal rows are all kept (as in :mod:`shared.domain.pareto`). The distinct rows are
    sorted lexicographically, so a row can only be dominated by one before it: with two
    objectives, exactly when an earlier row has a lower or equal second cost.
    """
    if len(cost) == 0:
        return np.empty(0, np.int64)
    distinct, inverse = np.unique(cost, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if distinct.shape[1] == 2:
        second = distinct[:, 1]
        before = np.concatenate(([np.inf], np.minimum.accumulate(second)[:-1]))
        kept_distinct = np.flatnonzero(second < before)
    else:
        kept: list[int] = []
        for pos in range(len(distinct)):
            row = distinct[pos]
            if kept and np.any(np.all(distinct[kept] <= row, axis=1)):
                continue
            kept.append(pos)
        kept_distinct = np.array(kept, dtype=np.int64)
    keep: IntArray = np.flatnonzero(np.isin(inverse, kept_distinct))
    return keep
