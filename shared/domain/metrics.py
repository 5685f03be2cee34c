"""Metrics an evaluation reports beside its loss (``output.json``'s ``metrics``), and
the loss a task computes from them (docs/architecture.md §6.4).

Every metric is a finite number under a short plain name; a point keeps all of them.
A task may define its loss from them instead of taking the payload's ``loss``: a
weighted sum (``figureOfMerit: {metric: weight}``) or several objectives
(``objectives: [metric, ...]``, one per ``steering.directions`` entry). Pure functions:
the api applies them where a site's result is recorded (:mod:`services.api.results`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

MAX_METRICS = 64
"""Metrics one point may report."""
MAX_METRIC_NAME = 100
"""Longest metric name, in characters."""


class MetricsError(ValueError):
    """Why a point's reported metrics cannot be used; the point fails with it."""


def metric_name_issue(name: object) -> str | None:
    """Why ``name`` cannot name a metric; None when it can. Names are stored as keys,
    so ``.``, a leading ``$`` and control characters are refused."""
    if not isinstance(name, str) or not name:
        return "metric names must be non-empty strings"
    if len(name) > MAX_METRIC_NAME:
        return f"metric names are at most {MAX_METRIC_NAME} characters, got {len(name)}"
    if name.startswith("$") or "." in name:
        return f"metric name {name!r} must not start with '$' or contain '.'"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return f"metric name {name!r} must not contain control characters"
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def check_metrics(raw: object) -> dict[str, float]:
    """The reported metrics as numbers; raises :class:`MetricsError` naming the first
    problem (not an object, too many, a bad name, a value that is no finite number)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise MetricsError(f"metrics must be a JSON object of numbers, got {type(raw).__name__}")
    if len(raw) > MAX_METRICS:
        raise MetricsError(f"metrics: {len(raw)} reported, at most {MAX_METRICS} are kept")
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        problem = metric_name_issue(name)
        if problem:
            raise MetricsError(f"metrics: {problem}")
        number = _number(value)
        if number is None:
            shown = value if isinstance(value, int | float | str | None) else type(value).__name__
            raise MetricsError(f"metrics.{name}: must be a finite number, got {shown!r}")
        metrics[name] = number
    return metrics


def _missing(names: Sequence[str], metrics: Mapping[str, float], rule: str) -> None:
    absent = [n for n in names if n not in metrics]
    if absent:
        reported = ", ".join(sorted(metrics)) or "none"
        raise MetricsError(
            f"{rule} needs metric{'s' if len(absent) > 1 else ''} {', '.join(absent)}, "
            f"which the evaluation did not report (metrics reported: {reported})"
        )


def figure_of_merit(weights: Mapping[str, float], metrics: Mapping[str, float]) -> float:
    """The weighted sum of ``metrics``; raises :class:`MetricsError` when one is
    missing or the sum is not finite."""
    _missing(list(weights), metrics, "figureOfMerit")
    total = math.fsum(weight * metrics[name] for name, weight in weights.items())
    if not math.isfinite(total):
        raise MetricsError(f"figureOfMerit: the weighted sum is not finite ({total})")
    return total


def objective_losses(names: Sequence[str], metrics: Mapping[str, float]) -> list[float]:
    """The metrics named by ``objectives``, in that order."""
    _missing(names, metrics, "objectives")
    return [metrics[name] for name in names]
