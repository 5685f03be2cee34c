"""What every adapter is given and what it must offer.

A :class:`Proposer` is built from a :class:`DrawRequest`, which carries everything the
optimiser may know (the stored points, the seeds, how many evaluations run at once), so
two steering processes given the same request propose the same points. That build is
the *rebuild*: what a steering process does after a restart or when it takes over a
segment. The owner of a segment then keeps the proposer in memory
(:mod:`services.steering.optimizer`): it asks it for points, :meth:`Proposer.accept`-s
the ones that are stored, and :meth:`Proposer.tell`-s each open point its result when it
settles, so an optimiser learns by deltas and keeps its own state (Nevergrad's
candidates, CMA-ES's generations) instead of reconstructing it at every draw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shared.searchspace import SearchSpace

Direction = Literal["minimize", "maximize"]


class SteeringUnavailable(ValueError):
    """The configured algorithm cannot run here or cannot be rebuilt from stored points
    (a missing optional package, an optimiser that only follows its own proposals).

    Raised when a task config is checked, so that the API refuses it; if it is raised
    during a draw (a server that lacks a package the API server had), the task cannot go
    on and should fail with this message.
    """


@dataclass(frozen=True)
class Observation:
    """One stored point as an optimiser sees it.

    ``losses`` is ``None`` while the point is open (unevaluated or pending). Otherwise it
    holds one value per objective, in the task's directions; a failed point told with
    the large loss holds that loss for every objective, negated for the maximised ones,
    so that it is the worst value in every direction.
    """

    params: dict[str, Any]
    losses: tuple[float, ...] | None
    index: int = -1
    """The point's index in its segment (-1: not a stored point)."""

    @property
    def is_open(self) -> bool:
        return self.losses is None


@dataclass(frozen=True)
class DrawRequest:
    """Everything a proposer may use.

    ``observations`` are in creation (index) order; open points are among them.
    ``stored`` holds the parameters of every stored point whatever its status,
    including failed points that ``failedPoints: exclude`` keeps from the optimiser
    (the grid never re-proposes them). ``seed`` is constant over the segment's life
    (scrambled and quasi-random sequences need it to continue where they were);
    ``draw_seed`` also depends on the number of stored points, so that samplers that
    start afresh at every draw do not repeat their first proposals.
    """

    space: SearchSpace
    algorithm: str
    args: Mapping[str, object]
    observations: tuple[Observation, ...]
    stored: tuple[dict[str, Any], ...]
    directions: tuple[Direction, ...]
    seed: int
    draw_seed: int
    parallelism: int
    budget: int

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1


class Proposer(Protocol):
    """An optimiser rebuilt from stored points, then kept up to date by deltas.

    Open observations of the request are in flight in the proposer, each under its
    index, until :meth:`tell` settles them.
    """

    def prepare(self, draw_seed: int) -> None:
        """Called before each draw with that draw's seed: samplers that hold no state
        of their own are re-seeded with it, so that a kept proposer draws exactly what
        a rebuilt one would; stateful ones ignore it."""

    def ask(self) -> dict[str, Any] | None:
        """The next proposal, in the backend's values (the caller snaps it onto the
        space's grid); ``None`` once the algorithm has nothing left to propose."""

    def accept(self, index: int) -> None:
        """The last proposal is stored as the open point ``index``."""

    def discard(self, known: Observation | None, open_index: int | None = None) -> None:
        """The last proposal will not be stored: it duplicates an open point (``known``
        is None, ``open_index`` names that point) or an evaluated one (``known`` holds
        it, with its loss)."""

    def tell(self, index: int, observation: Observation | None) -> None:
        """The open point ``index`` settled: told ``observation``'s losses, or, when
        None (a failure the task excludes, a loss that cannot be told), dropped."""


def first_loss(observation: Observation, direction: Direction) -> float:
    """The value a single-objective minimiser is told: the first objective, negated
    when it is maximised."""
    assert observation.losses is not None
    value = observation.losses[0]
    return value if direction == "minimize" else -value
