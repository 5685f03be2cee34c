"""Checking the values of one dimension against its method, and collecting problems.

Shared by both input forms (:mod:`shared.searchspace.parse` reads the keys of each
form, then hands the values here), so a rule about a value is written once. Linear in
the number of values: categories are checked against a dict of the values seen.
"""

from __future__ import annotations

import math

from shared.bounds import int64_issue
from shared.searchspace.model import (
    Dimension,
    JsonScalar,
    Loc,
    Method,
    SearchSpaceError,
    SearchSpaceIssue,
    show,
)

PHPO_METHODS: dict[Method, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "categorical": (("categories",), ("grid_search",)),
    "uniform": (("low", "high"), ()),
    "uniformint": (("low", "high"), ()),
    "loguniform": (("low", "high"), ("base",)),
    "loguniformint": (("low", "high"), ("base",)),
    "normal": (("mu", "sigma"), ()),
    "lognormal": (("mu", "sigma"), ("base",)),
    "quniform": (("low", "high", "q"), ()),
    "qloguniform": (("low", "high", "q"), ("base",)),
}
"""Method -> (required, optional) keys of its ``dimension`` object."""

MAX_CATEGORIES = 10_000
MAX_ISSUES = 50
"""Problems listed in one error; the rest are counted."""

_INT_METHODS = frozenset({"uniformint", "loguniformint"})
_LOG_METHODS = frozenset({"loguniform", "loguniformint", "lognormal", "qloguniform"})
# A field of a dimension: its raw value and where the user wrote it.
Fields = dict[str, tuple[object, Loc]]


class Issues:
    """The problems found so far: the first :data:`MAX_ISSUES` kept, the rest counted,
    so that a space with a million bad entries gets a short 422."""

    def __init__(self) -> None:
        self.items: list[SearchSpaceIssue] = []
        self.dropped = 0

    def add(self, loc: Loc, msg: str) -> None:
        if len(self.items) < MAX_ISSUES:
            self.items.append(SearchSpaceIssue(loc, msg))
        else:
            self.dropped += 1

    @property
    def count(self) -> int:
        return len(self.items) + self.dropped

    def error(self) -> SearchSpaceError:
        items = list(self.items)
        if self.dropped:
            items.append(SearchSpaceIssue((), f"and {self.dropped} more problems"))
        return SearchSpaceError(items)


def build_dimension(name: str, method: Method, fields: Fields, issues: Issues) -> Dimension | None:
    """Check the values of one dimension against its method; None if any is wrong."""
    before = issues.count
    if method == "categorical":
        choices = _categories(fields, issues)
        grid = _grid_search(fields, issues)
        if issues.count > before or choices is None:
            return None
        return Dimension(
            name=name, method=method, kind="categorical", choices=choices, grid_search=grid
        )
    if any(key not in fields for key in PHPO_METHODS[method][0]):
        return None  # already reported as missing
    integer = method in _INT_METHODS
    values = {
        key: _number(raw, loc, integer and key in ("low", "high"), issues)
        for key, (raw, loc) in fields.items()
    }
    low, high, q = values.get("low"), values.get("high"), values.get("q")
    log = method in _LOG_METHODS
    if low is not None and high is not None and low >= high:
        issues.add(fields["high"][1], f"must be greater than low ({low}), got {high}")
    elif log and low is not None and low <= 0:
        issues.add(fields["low"][1], f"must be > 0 for the log scale of {method}, got {low}")
    if q is not None and q <= 0:
        issues.add(fields["q"][1], f"must be > 0, got {q}")
    elif q is not None and low is not None and high is not None and q > high - low:
        issues.add(
            fields["q"][1],
            f"{q} is larger than high - low ({high - low}): only low could ever be drawn",
        )
    sigma = values.get("sigma")
    if sigma is not None and sigma <= 0:
        issues.add(fields["sigma"][1], f"must be > 0, got {sigma}")
    base = values.get("base")
    if base is not None and base <= 1:
        issues.add(fields["base"][1], f"must be > 1, got {base}")
    if issues.count > before or any(v is None for v in values.values()):
        return None
    dim = Dimension(
        name=name,
        method=method,
        kind="int" if integer else "float",
        log=log,
        low=low,
        high=high,
        q=q,
        mu=values.get("mu"),
        sigma=sigma,
        base=base,
    )
    if method in ("normal", "lognormal"):
        lowest, highest = dim.value_range()
        if not math.isfinite(lowest) or not math.isfinite(highest) or (log and lowest <= 0):
            issues.add(fields["mu"][1], "mu and sigma put values beyond floating-point range")
            return None
    return dim


def _number(value: object, loc: Loc, integer: bool, issues: Issues) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        issues.add(loc, f"must be a number, got {show(value)}")
        return None
    problem = int64_issue(value) if isinstance(value, int) else None
    if problem:
        issues.add(loc, problem)
        return None
    if not math.isfinite(value):
        issues.add(loc, f"must be finite, got {value}")
        return None
    if integer:
        if not float(value).is_integer():
            issues.add(loc, f"must be a whole number for an integer method, got {value}")
            return None
        return int(value)
    return value


def _categories(fields: Fields, issues: Issues) -> tuple[JsonScalar, ...] | None:
    """The categories as written, repeats included (a repeat is a weight)."""
    if "categories" not in fields:
        return None
    raw, loc = fields["categories"]
    if not isinstance(raw, list):
        issues.add(loc, f"must be a list, got {show(raw)}")
        return None
    if not raw:
        issues.add(loc, "is empty: give at least one category")
        return None
    if len(raw) > MAX_CATEGORIES:
        issues.add(loc, f"has {len(raw)} categories; at most {MAX_CATEGORIES} are allowed")
        return None
    first: dict[JsonScalar, int] = {}
    """Where each value was first written; Python's equality, so 1, 1.0, true share one."""
    ok = True
    for index, value in enumerate(raw):
        if value is not None and not isinstance(value, bool | int | float | str):
            issues.add(
                (*loc, index), f"must be a string, number, boolean or null, got {show(value)}"
            )
            ok = False
            continue
        problem = int64_issue(value) if isinstance(value, int) else None
        if problem is None and isinstance(value, float) and not math.isfinite(value):
            problem = f"must be finite, got {value}"
        if problem is None and isinstance(value, str) and "\0" in value:
            problem = "must not contain a NUL byte (it cannot be a command-line argument)"
        if problem:
            issues.add((*loc, index), problem)
            ok = False
            continue
        earlier = first.setdefault(value, index)
        if isinstance(raw[earlier], bool) != isinstance(value, bool):
            issues.add(
                (*loc, index),
                f"{show(value)} and category {earlier} ({show(raw[earlier])}) are equal to "
                "Python, so Optuna cannot tell them apart: use distinct values",
            )
            ok = False
    return tuple(raw) if ok else None


def _grid_search(fields: Fields, issues: Issues) -> bool | None:
    if "grid_search" not in fields:
        return None
    raw, loc = fields["grid_search"]
    if raw in (0, 1) and isinstance(raw, bool | int):
        return bool(raw)
    issues.add(loc, f"must be 0, 1, true or false, got {show(raw)}")
    return None
