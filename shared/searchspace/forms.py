"""Writing a :class:`SearchSpace` back in the reference JSON forms.

Used when a steering container must be handed ``opt_space`` in the form it reads, and to
prove that parsing loses nothing: a space written in either form and parsed comes back
as the same JSON (``grid_search: false`` comes back as ``0``, bounds ``10.0`` of an
integer method as ``10``, and iDDS ``params.lower/upper`` and ``Scalar`` with
``"log": true`` come back as ``bounds`` and ``Log``). A conditional space is written
flat, each conditional dimension with the ``when`` it stands for (a ``oneOf`` becomes its
categorical dimension and ``when``-s naming it); :func:`~shared.searchspace.conditions.flatten`
it first for a program that knows no conditions.
"""

from __future__ import annotations

from typing import Any

from shared.searchspace.model import Dimension, SearchSpace, SearchSpaceError, SearchSpaceIssue

_IDDS_METHODS = frozenset({"categorical", "uniform", "uniformint", "loguniform", "loguniformint"})


def to_phpo(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The phpo/hpogrid form, ``{"name": {"method": M, "dimension": {...}}}``."""
    out: dict[str, dict[str, Any]] = {}
    for dim in space.dimensions:
        dimension: dict[str, Any]
        if dim.method == "categorical":
            dimension = {"categories": list(dim.choices)}
            if dim.grid_search is not None:
                dimension["grid_search"] = int(dim.grid_search)
        else:
            keys = ("mu", "sigma", "base") if dim.mu is not None else ("low", "high", "q", "base")
            dimension = {key: getattr(dim, key) for key in keys if getattr(dim, key) is not None}
        default = {"default": dim.default} if dim.has_default else {}
        out[dim.name] = {"method": dim.method, "dimension": dimension, **default, **_when(dim)}
    return out


def _when(dim: Dimension) -> dict[str, Any]:
    """A conditional dimension's condition, in the stored (flat) form: ``oneOf`` and
    ``repeat`` are written as the ``when`` they stand for."""
    if dim.parent is None:
        return {}
    return {"when": {dim.parent: list(dim.parent_values)}}


def to_idds(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The iDDS/Nevergrad form.

    Only categorical and (log-)uniform (integer) dimensions have one; a space with
    ``normal``, ``lognormal``, ``quniform`` or ``qloguniform`` raises
    :class:`SearchSpaceError` naming each such dimension rather than silently handing
    the steering container a different distribution. ``grid_search`` and ``base`` have
    no iDDS equivalent and are dropped (neither changes which values are valid).
    """
    out: dict[str, dict[str, Any]] = {}
    issues: list[SearchSpaceIssue] = []
    for dim in space.dimensions:
        if dim.method not in _IDDS_METHODS:
            issues.append(
                SearchSpaceIssue(
                    (dim.name, "method"),
                    f"{dim.method} has no iDDS form (it has only Choice, Scalar and Log)",
                )
            )
        elif dim.method == "categorical":
            out[dim.name] = {
                "type": "Choice",
                "params": {"choices": list(dim.choices)},
                **_when(dim),
            }
        else:
            entry: dict[str, Any] = {
                "type": "Log" if dim.log else "Scalar",
                "bounds": [dim.low, dim.high],
            }
            if dim.kind == "int":
                entry["integer"] = True
            out[dim.name] = {**entry, **_when(dim)}
    if issues:
        raise SearchSpaceError(issues)
    return out
