"""The one internal form of a search space, and the error that parsing raises.

Both accepted input forms (phpo/hpogrid and iDDS/Nevergrad) are read into these models,
and every backend (Optuna, Nevergrad, the JSON forms handed to steering containers) is
produced from them, so a rule about a dimension is written once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, model_validator

JsonScalar: TypeAlias = bool | int | float | str | None
"""A category value: kept exactly as the user wrote it, because ``input.json`` gets it."""

Kind = Literal["float", "int", "categorical"]
Method = Literal[
    "categorical",
    "uniform",
    "uniformint",
    "loguniform",
    "loguniformint",
    "normal",
    "lognormal",
    "quniform",
    "qloguniform",
]
Loc: TypeAlias = tuple[str | int, ...]

PRIOR_WIDTH = 4.0
"""How many sigmas either side of mu stand for a normal prior where bounds are needed."""


class Dimension(BaseModel):
    """One named hyperparameter.

    ``method`` is the phpo method name whatever form the space came in, so that the two
    forms of the same space compare equal. Which fields are set depends on it:

    * ``categorical``: ``choices`` as written, a repeated one counting as a weight (and
      ``grid_search`` if the user gave it);
    * ``uniform``, ``uniformint``, ``loguniform``, ``loguniformint``: ``low``, ``high``;
    * ``quniform``, ``qloguniform``: ``low``, ``high``, ``q``; values are ``low + k*q``;
    * ``normal``: ``mu``, ``sigma``; ``lognormal``: ``base ** normal(mu, sigma)``.

    ``base`` is hpogrid's optional log base. It matters only for ``lognormal`` (default
    e); for the log-uniform methods it is kept for the round trip and changes nothing.
    ``log`` is true for every method whose values are spread on a log scale.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    method: Method
    kind: Kind
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    q: int | float | None = None
    mu: int | float | None = None
    sigma: int | float | None = None
    base: int | float | None = None
    choices: tuple[JsonScalar, ...] = ()
    grid_search: bool | None = None
    parent: str | None = None
    """Conditional spaces: the dimension is active only while ``parent`` is active and
    takes one of ``parent_values`` (:mod:`shared.searchspace.conditions`)."""
    parent_values: tuple[JsonScalar, ...] = ()
    has_default: bool = False
    default: JsonScalar = None
    """The value a user gave as the dimension's default (phpo form ``"default"``), when
    ``has_default``: it completes partial initial points (:mod:`.initial`)."""

    @property
    def distinct_choices(self) -> tuple[JsonScalar, ...]:
        """The categories once each, in the order first written."""
        return tuple(dict.fromkeys(self.choices))

    @property
    def weights(self) -> tuple[int, ...]:
        """How often each of :attr:`distinct_choices` is written: its prior weight."""
        counts: dict[JsonScalar, int] = {}
        for choice in self.choices:
            counts[choice] = counts.get(choice, 0) + 1
        return tuple(counts.values())

    def value_range(self) -> tuple[float, float]:
        """Where the values lie: the bounds, or for the normal priors (which have none)
        ``mu ± 4 sigma`` (as ``base ** (mu ± 4 sigma)`` for ``lognormal``), which holds
        all but 6e-5 of the draws. Backends that need bounds get this range; may be
        infinite for extreme parameters, which parsing rejects."""
        if self.mu is not None and self.sigma is not None:
            low = self.mu - PRIOR_WIDTH * self.sigma
            high = self.mu + PRIOR_WIDTH * self.sigma
            if self.method == "lognormal":
                base = math.e if self.base is None else float(self.base)
                return _power(base, low), _power(base, high)
            return float(low), float(high)
        if self.low is None or self.high is None:
            raise ValueError(f"{self.method} dimension {self.name!r} has no range")
        return float(self.low), float(self.high)


def _power(base: float, exponent: float) -> float:
    try:
        return math.pow(base, exponent)
    except OverflowError:
        return math.inf


def show(value: object, limit: int = 60) -> str:
    """A value as JSON, shortened, for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SearchSpace(BaseModel):
    """An ordered set of dimensions, in the order the user wrote them, except that in a
    conditional space a dimension comes after the one it depends on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dimensions: tuple[Dimension, ...]

    @model_validator(mode="after")
    def _names_are_unique(self) -> SearchSpace:
        names = [d.name for d in self.dimensions]
        if len(set(names)) != len(names):
            raise ValueError(f"dimension names must be unique: {names}")
        seen: set[str] = set()
        for dim in self.dimensions:
            if dim.parent is not None and dim.parent not in seen:
                raise ValueError(f"{dim.name} depends on {dim.parent}, which must come first")
            seen.add(dim.name)
        return self

    @property
    def conditional(self) -> bool:
        """Whether some dimension is active only for some values of another."""
        return any(d.parent is not None for d in self.dimensions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def dimension(self, name: str) -> Dimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)


@dataclass(frozen=True)
class SearchSpaceIssue:
    """One problem, located like pydantic's ``loc``: ``("batch_size", "dimension", "low")``."""

    loc: Loc
    msg: str

    def __str__(self) -> str:
        where = ".".join(str(part) if part != "" else '""' for part in self.loc)
        return f"{where or 'search space'}: {self.msg}"


class SearchSpaceError(ValueError):
    """Every problem found in a search space, so that one 422 can name each bad key.

    ``loc`` and ``message`` are those of the first issue, for callers that show one;
    ``issues`` holds them all and ``errors()`` renders them as FastAPI renders a
    ``RequestValidationError``.
    """

    def __init__(self, issues: list[SearchSpaceIssue] | tuple[SearchSpaceIssue, ...]) -> None:
        if not issues:
            raise ValueError("SearchSpaceError needs at least one issue")
        self.issues: tuple[SearchSpaceIssue, ...] = tuple(issues)
        count = len(self.issues)
        head = "1 problem" if count == 1 else f"{count} problems"
        super().__init__(f"{head} in the search space: " + "; ".join(map(str, self.issues)))

    @property
    def loc(self) -> Loc:
        return self.issues[0].loc

    @property
    def message(self) -> str:
        return self.issues[0].msg

    def errors(self) -> list[dict[str, Any]]:
        return [
            {"loc": list(issue.loc), "msg": issue.msg, "type": "search_space"}
            for issue in self.issues
        ]

    def prefixed(self, *prefix: str | int) -> SearchSpaceError:
        """The same issues located under ``prefix`` (a segment index, a request field)."""
        return SearchSpaceError([SearchSpaceIssue(prefix + i.loc, i.msg) for i in self.issues])
