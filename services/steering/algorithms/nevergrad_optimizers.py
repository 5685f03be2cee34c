"""Nevergrad optimisers, rebuilt from the stored points, then kept by the segment's owner.

Any name in ``nevergrad.optimizers.registry`` can be configured (``NGOpt`` by default);
``args`` re-configure the registry's configured optimisers (``CMA``'s ``popsize``,
``TwoPointsDE``'s ``crossover``, ...), checked against their constructor.

**Rebuild**, in this order, on an optimiser created with the search space as a
``Dict`` parametrisation (:func:`~shared.searchspace.to_nevergrad`; a conditional space
is a ``Choice`` of ``Dict``-s per parent, so a candidate holds only active values), the budget (the
steering block's ``budget``, else the task's ``maxPoints``) and
``num_workers = max(parallelism, 2)``:

1. one-shot optimisers (random, LHS, Hammersley, ... sequences) are fast-forwarded by one
   ``ask`` per stored point, so that the sequence continues where it was; they are
   seeded with the segment's constant seed, every other optimiser with the per-draw
   seed (``parametrization.random_state``);
2. each told point, in index order, is passed to ``suggest``, ``ask``-ed back and
   ``tell``-ed its loss: the first objective, negated when maximised (Nevergrad
   minimises one objective here). A suggested candidate is not one the optimiser drew,
   so Nevergrad handles the tell as for ``spawn_child(new_value=...)`` (its
   tell-not-asked path); going through ``ask`` as well makes ``num_ask`` count every
   stored point, without which optimisers that start from the centre of the space
   (OnePlusOne, NGOpt's discrete choices) would propose the centre at every draw;
3. each open point is suggested and asked the same way and never told: Nevergrad
   counts it as in flight (``num_ask - num_tell``), which is how its parallel
   optimisers keep new proposals apart from running ones.

A rebuild costs what Nevergrad's own tells cost, per stored point and not growing with
the history: for NGOpt on four floats some 5 ms with a budget of 1,000 (an online
study's default) and 10 ms with 100; with a budget of 1,000,000 NGOpt becomes a
portfolio of 64 rescaled optimisers, each told every point (0.25 s per point), which is
why the budget is the steering block's ``budget`` when given and a study's is not its
trial cap (the ``suggest``/``ask`` above add some 4 %). So it happens only when a
steering process takes a segment over; its owner then keeps the optimiser and uses
Nevergrad's own pending-ask support: an accepted proposal is a candidate asked
and not yet told, and a settled point's candidate is told its loss. An optimiser
rebuilt at every draw cannot be trusted anyway: a (1+1) or NGOpt told a history through
``suggest`` keeps proposing around where it started.

Why ``num_workers`` is at least 2: with one worker, Nevergrad means strict ask/tell
alternation, and NGOpt then picks sequential optimisers (Cobyla, SQP, chains of them)
that run SciPy in a background thread and only follow their own proposals: they cannot
be told stored points, so they cannot be rebuilt. The steering asks several points at
once anyway (``nPointsPerIteration``). For the same reason optimisers that do not accept
points they did not ask, or that refuse parallel workers, are refused when the task
config is checked (:func:`probe`).

NumPy: NGOpt picks a scikit-learn metamodel for small continuous spaces, whose
``float()`` of a one-element array NumPy 2.4 rejects; the project
bounds NumPy below 2.4, where this is a DeprecationWarning, silenced here by message.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np

from services.steering.algorithms.base import (
    DrawRequest,
    Observation,
    SteeringUnavailable,
    first_loss,
)
from shared.searchspace import from_nevergrad, nevergrad_value, to_nevergrad

DEFAULT = "NGOpt"
RESERVED_ARGS = ("parametrization", "budget", "num_workers", "self")
ARRAY_TO_SCALAR = "Conversion of an array with ndim > 0 to a scalar"
NO_PLOTTING = "Could not import matplotlib"
ORPHAN_INJECTION = "orphanated injected solution"
"""pycma's note when a candidate Nevergrad injects (a told point it did not ask) has
left its population: expected with asks and tells interleaved across workers."""


def _ng() -> Any:
    import nevergrad

    _default_messaging_thread(nevergrad)
    return nevergrad


def _default_messaging_thread(nevergrad: Any) -> None:
    """Give Nevergrad's recast optimisers a class-level ``_messaging_thread = None``.

    Nevergrad (1.0.12) builds sequential recast optimisers (SQP, Cobyla, ...) with
    several workers while choosing among candidates; the base class refuses that in its
    ``__init__`` before the thread attribute is set, and the half-built object's
    ``__del__`` then raises ``AttributeError`` whenever the garbage collector gets to it
    ("Exception ignored in RecastOptimizer.__del__" in the steering log, an error in a
    test that happens to be running). With the default, that ``__del__`` does nothing.
    """
    recast = nevergrad.optimization.recaster.RecastOptimizer
    if "_messaging_thread" not in vars(recast):
        recast._messaging_thread = None


@contextmanager
def quiet_nevergrad() -> Iterator[None]:
    """Nevergrad's own warnings (inefficient settings, clipped losses, ...), NumPy's
    deprecation of the metamodel's array-to-float conversion and pycma's note that it
    cannot plot, only around our calls."""
    ng = _ng()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ng.errors.NevergradWarning)
        warnings.filterwarnings("ignore", message=ARRAY_TO_SCALAR, category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=NO_PLOTTING, category=UserWarning)
        warnings.filterwarnings("ignore", message=ORPHAN_INJECTION)
        yield


@cache
def registry_names() -> dict[str, str]:
    """Registry names by their lower-case form."""
    return {name.lower(): name for name in _ng().optimizers.registry}


def canonical_name(algorithm: str) -> str | None:
    return registry_names().get(algorithm.lower())


def accepted_args(name: str) -> tuple[str, ...]:
    """What ``args`` may set: the configuration parameters of a configured optimiser;
    nothing for an optimiser class (``NGOpt``, ...)."""
    entry = _ng().optimizers.registry[name]
    if not isinstance(entry, _ng().optimizers.base.ConfiguredOptimizer):
        return ()
    params = inspect.signature(type(entry)).parameters
    return tuple(
        p
        for p, spec in params.items()
        if p not in RESERVED_ARGS and spec.kind not in (spec.VAR_POSITIONAL, spec.VAR_KEYWORD)
    )


def factory(name: str, args: Mapping[str, object]) -> Any:
    """The registry entry, re-configured with ``args``."""
    entry = _ng().optimizers.registry[name]
    if not args:
        return entry
    with quiet_nevergrad():
        return type(entry)(**{**entry.config(), **args})


class NevergradProposer:
    def __init__(self, request: DrawRequest) -> None:
        self._direction = request.directions[0]
        self._last: Any = None
        self._open: dict[int, list[Any]] = {}
        """The candidates standing for each open point (the point's own, and the
        duplicates of it that were proposed and not stored), by the point's index."""
        make = factory(request.algorithm, request.args)
        one_shot = bool(getattr(make, "one_shot", False))
        self._space = request.space
        parametrization = to_nevergrad(request.space)
        seed = request.seed if one_shot else request.draw_seed
        parametrization.random_state = np.random.RandomState(seed % 2**32)
        with quiet_nevergrad():
            self._opt = make(
                parametrization,
                budget=request.budget,
                num_workers=max(request.parallelism, 2),
            )
            if one_shot:
                for _ in request.stored:
                    self._opt.ask()
            self._rebuild(request)

    def _rebuild(self, request: DrawRequest) -> None:
        ng = _ng()
        try:
            for obs in request.observations:
                candidate = None if obs.is_open else self._asked(obs.params)
                if candidate is not None:
                    self._opt.tell(candidate, first_loss(obs, self._direction))
            for obs in request.observations:
                if obs.is_open:
                    candidate = self._asked(obs.params)
                    if candidate is not None:
                        self._open[obs.index] = [candidate]
        except ng.errors.TellNotAskedNotSupportedError as exc:
            raise SteeringUnavailable(
                f"nevergrad {request.algorithm} cannot be told points it did not propose, "
                "so it cannot be rebuilt from the stored points"
            ) from exc

    def _asked(self, params: dict[str, Any]) -> Any:
        """Suggest ``params`` and ask them back, so that the optimiser counts the point
        among its asks; None if Nevergrad's bounds refuse the value (a hair outside
        them, from user code or a changed space)."""
        try:
            self._opt.suggest(nevergrad_value(self._space, params))
        except ValueError:
            return None
        return self._opt.ask()

    def prepare(self, draw_seed: int) -> None:
        """Nothing: the optimiser's random state goes on from draw to draw."""
        del draw_seed

    def ask(self) -> dict[str, Any]:
        with quiet_nevergrad():
            self._last = self._opt.ask()
        point = from_nevergrad(self._last.value)
        return {name: _plain(value) for name, value in point.items()}

    def accept(self, index: int) -> None:
        if self._last is not None:
            self._open[index] = [self._last]
            self._last = None

    def discard(self, known: Observation | None, open_index: int | None = None) -> None:
        """A duplicate of an evaluated point is told that point's loss (what the
        optimiser would learn by evaluating it, and what makes a (1+1) widen its
        mutations); a duplicate of an open point stays asked and untold, standing for
        that point in flight, and is told with it."""
        if self._last is None:
            return
        if known is not None and known.losses is not None:
            with quiet_nevergrad():
                self._opt.tell(self._last, first_loss(known, self._direction))
        elif known is None and open_index is not None and open_index in self._open:
            self._open[open_index].append(self._last)
        self._last = None

    def tell(self, index: int, observation: Observation | None) -> None:
        """A dropped point's candidates stay asked: Nevergrad has no way to withdraw
        an ask, and an excluded failure teaches nothing."""
        candidates = self._open.pop(index, [])
        if observation is None or observation.losses is None:
            return
        loss = first_loss(observation, self._direction)
        with quiet_nevergrad():
            for candidate in candidates:
                self._opt.tell(candidate, loss)


def _plain(value: object) -> object:
    """Python scalars for NumPy ones (integer casting gives ``numpy.int64``)."""
    item = getattr(value, "item", None)
    return item() if type(value).__module__ == "numpy" and callable(item) else value
