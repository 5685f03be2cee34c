"""Search spaces: one internal form, both reference input forms, every backend.

A user writes a search space in the phpo/hpogrid form or the iDDS/Nevergrad form
(docs/architecture.md §6.2). The API parses it once at submission (:func:`parse_search_space`,
:func:`parse_segmented`), rejecting it with every problem located; the optimisers turn
the parsed :class:`SearchSpace` into Optuna or Nevergrad terms (:func:`to_optuna`,
:func:`to_nevergrad`, then :func:`snap_point`); the scheduler writes it back for
steering containers (:func:`to_phpo`, :func:`to_idds`) and checks what they return
(:func:`validate_point`, :func:`canonical_key`). Everything here is pure: no I/O.
"""

from __future__ import annotations

from shared.searchspace.backends import (
    from_nevergrad,
    nevergrad_value,
    snap_point,
    suggest_active,
    to_nevergrad,
    to_optuna,
)
from shared.searchspace.conditions import active_names, drop_inactive, flatten
from shared.searchspace.forms import to_idds, to_phpo
from shared.searchspace.model import (
    Dimension,
    JsonScalar,
    Kind,
    Loc,
    Method,
    SearchSpace,
    SearchSpaceError,
    SearchSpaceIssue,
)
from shared.searchspace.parse import IDDS_TYPES, parse_search_space, parse_segmented
from shared.searchspace.points import canonical_key, validate_point
from shared.searchspace.values import PHPO_METHODS

__all__ = [
    "IDDS_TYPES",
    "PHPO_METHODS",
    "Dimension",
    "JsonScalar",
    "Kind",
    "Loc",
    "Method",
    "SearchSpace",
    "SearchSpaceError",
    "SearchSpaceIssue",
    "active_names",
    "canonical_key",
    "drop_inactive",
    "flatten",
    "from_nevergrad",
    "nevergrad_value",
    "parse_search_space",
    "parse_segmented",
    "snap_point",
    "suggest_active",
    "to_idds",
    "to_nevergrad",
    "to_optuna",
    "to_phpo",
    "validate_point",
]
