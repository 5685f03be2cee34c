"""Optuna samplers on an in-memory study, rebuilt from the stored points and then kept.

Supported: ``tpe`` (multivariate, constant liar), ``gp`` (needs PyTorch), ``random``,
``cmaes`` (needs the ``cmaes`` package), ``qmc`` (scrambled Sobol by default) and
``nsga2``. ``args`` go to the sampler's constructor; ``seed`` comes from the steering
block, never from ``args``.

How the study is rebuilt depends on where the sampler keeps its state:

* ``add``: TPE, GP and random learn only from the trials in the study. Evaluated points
  are added as completed trials, open ones as running trials (TPE's constant liar and
  GP's batch acquisition keep new points away from them). Cheap: no sampler call.
* ``replay``: CMA-ES, NSGA-II and QMC keep state in the trials' and study's system
  attributes (CMA-ES's generations and pickled optimiser, NSGA-II's generations, the
  position in the QMC sequence), written while the sampler proposes. So every stored
  point is replayed in index order: enqueued as fixed parameters, asked (with the
  sampler's relative sampling forced, so that its state advances exactly as if it had
  proposed the point), then told its loss or, if open, left running. This costs one
  sampler call per stored point. Optuna's CMA-ES scans every trial of the study at each
  call, which made a replay O(n²); :class:`IndexedCmaEsSampler` answers those scans
  from an index, so its replay is O(n) and its asks no longer grow with the study.

Once built, the study is kept by the segment's owner: accepted proposals stay running
trials, and a settled point is told its values (or failed, when excluded). The ``add``
samplers hold no state of their own, so :meth:`OptunaProposer.prepare` gives the study
a fresh sampler seeded for the draw: a kept study draws exactly what a rebuilt one
would. The ``replay`` samplers keep theirs.

Conditional spaces (docs/input.md) are sampled by define-by-run: a trial suggests each
dimension, parents first, only while it is active, so TPE (``group=True`` by default
for them), random, QMC (over the dimensions every point has; the others at random) and
the rest see trials holding exactly the active parameters, as the points do.

Objectives: ``tpe``, ``gp``, ``random``, ``qmc`` and ``nsga2`` are told every objective
of a list loss (a multi-objective study with the task's directions); ``cmaes`` optimises
one objective and is told the first one.
"""

from __future__ import annotations

import bisect
import importlib.util
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, Trial, TrialState, create_trial

from services.steering.algorithms.base import DrawRequest, Observation, SteeringUnavailable
from shared.searchspace import suggest_active, to_optuna


class IndexedCmaEsSampler(optuna.samplers.CmaEsSampler):
    """Optuna's CMA-ES sampler, answering its two scans of the study from an index.

    At every ask, :class:`~optuna.samplers.CmaEsSampler` lists the study's completed
    trials, then filters them for those of its current generation: two passes over
    every trial, so a study of n trials costs O(n) per ask and replaying n stored points
    O(n²) (some 20 s for 10,000 points, most of it in these scans). This subclass keeps
    the completed trials, and those of each generation, in trial order, and adds to them
    only the trials that finished since the last ask. The lists it hands to the sampler
    are equal to the ones the scans would build, so it proposes exactly what the plain
    sampler does.

    A finished trial no longer changes, so what is indexed stays true. Anything the index
    does not model (pruned trials counted as completed, a filtered view of the study
    such as Hyperband's brackets, another study) goes to the plain scans.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._study_key: tuple[int, int] | None = None
        self._seen = 0
        """Trials looked at so far, by position in the study."""
        self._unfinished: list[int] = []
        """Positions of the trials among those seen that had not finished."""
        self._complete: list[FrozenTrial] = []
        self._positions: list[int] = []
        self._by_generation: dict[int, tuple[list[int], list[FrozenTrial]]] = {}
        self._handed: list[FrozenTrial] | None = None

    def _get_trials(self, study: optuna.Study) -> list[FrozenTrial]:
        if self._consider_pruned_trials or type(study) is not optuna.Study:
            self._handed = None
            return super()._get_trials(study)
        trials = study._get_trials(deepcopy=False, use_cache=True)
        key = (id(study._storage), study._study_id)
        if key != self._study_key or len(trials) < self._seen:
            self._reset_index(key)
        pending = [*self._unfinished, *range(self._seen, len(trials))]
        self._seen = len(trials)
        self._unfinished = []
        for position in pending:
            trial = trials[position]
            if trial.state == TrialState.COMPLETE:
                self._index(position, trial)
            elif not trial.state.is_finished():
                self._unfinished.append(position)
        self._handed = list(self._complete)
        return self._handed

    def _get_solution_trials(self, trials: list[FrozenTrial], generation: int) -> list[FrozenTrial]:
        if trials is not self._handed:
            return super()._get_solution_trials(trials, generation)
        entry = self._by_generation.get(generation)
        return [] if entry is None else list(entry[1])

    def _reset_index(self, key: tuple[int, int]) -> None:
        self._study_key = key
        self._seen = 0
        self._unfinished = []
        self._complete = []
        self._positions = []
        self._by_generation = {}

    def _index(self, position: int, trial: FrozenTrial) -> None:
        _insert(self._positions, self._complete, position, trial)
        generation = trial.system_attrs.get(self._attr_key_generation, -1)
        positions, members = self._by_generation.setdefault(generation, ([], []))
        _insert(positions, members, position, trial)


def _insert(
    positions: list[int], trials: list[FrozenTrial], position: int, trial: FrozenTrial
) -> None:
    """Insert ``trial`` at its place in trial order (usually at the end)."""
    at = bisect.bisect(positions, position)
    positions.insert(at, position)
    trials.insert(at, trial)


@dataclass(frozen=True)
class OptunaAlgorithm:
    """One sampler: how to build it and how to rebuild its study."""

    sampler: Callable[..., optuna.samplers.BaseSampler]
    rebuild: Literal["add", "replay"]
    multi_objective: bool
    defaults: Mapping[str, object] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    """Packages the sampler imports only once it models (Optuna's own dependencies
    are optional): checked up front so that a missing one is refused at submission."""
    base_seed: bool = False
    """Seed with the segment's constant seed (a scrambled sequence must stay the same
    sequence from draw to draw) instead of the per-draw seed."""
    build: Callable[..., optuna.samplers.BaseSampler] | None = None
    """What is built instead of ``sampler``, called with the study's search space and
    the sampler's arguments (:class:`KnownSpaceTPESampler`, :class:`IndexedCmaEsSampler`);
    ``sampler`` stays the stock class, whose signature says which ``args`` are accepted."""
    conditional_defaults: Mapping[str, object] = field(default_factory=dict)
    """Defaults for a conditional space, over ``defaults`` (TPE's ``group``: a model per
    set of parameters that occur together, instead of one over the always-active)."""


def relative_space(space: Mapping[str, BaseDistribution]) -> dict[str, BaseDistribution]:
    """What Optuna's intersection search space is for a study whose every trial has
    every parameter of ``space``: all of them, sorted by name, less the single-valued."""
    return {name: d for name, d in sorted(space.items()) if not d.single()}


class KnownSpaceTPESampler(optuna.samplers.TPESampler):
    """TPE told the segment's search space instead of working it out from the trials.

    Stock TPE computes the intersection of all completed trials' spaces, incrementally
    while one sampler instance lives; but a kept study gets a freshly seeded sampler at
    every draw, which then walks the whole history again (85 ms of a 150 ms draw at 10k
    trials). Every trial we add has every parameter, so the intersection is the space
    itself. Group decomposition and univariate TPE keep the stock behaviour.
    """

    def __init__(self, space: Mapping[str, BaseDistribution], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        known = kwargs.get("multivariate") is True and not kwargs.get("group")
        self._hpo_space = relative_space(space) if known else None

    def infer_relative_search_space(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self._hpo_space is None:
            return super().infer_relative_search_space(study, trial)
        return dict(self._hpo_space)


class KnownSpaceGPSampler(optuna.samplers.GPSampler):
    """GP told the segment's search space, for the reason :class:`KnownSpaceTPESampler`
    gives."""

    def __init__(self, space: Mapping[str, BaseDistribution], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hpo_space = relative_space(space)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self._hpo_space)


ALGORITHMS: dict[str, OptunaAlgorithm] = {
    "tpe": OptunaAlgorithm(
        optuna.samplers.TPESampler,
        "add",
        multi_objective=True,
        defaults={"multivariate": True, "constant_liar": True},
        build=KnownSpaceTPESampler,
        conditional_defaults={"group": True},
    ),
    "gp": OptunaAlgorithm(
        optuna.samplers.GPSampler,
        "add",
        multi_objective=True,
        needs=("torch", "scipy"),
        build=KnownSpaceGPSampler,
    ),
    "random": OptunaAlgorithm(optuna.samplers.RandomSampler, "add", multi_objective=True),
    "cmaes": OptunaAlgorithm(
        optuna.samplers.CmaEsSampler,
        "replay",
        multi_objective=False,
        needs=("cmaes",),
        build=lambda _space, **kwargs: IndexedCmaEsSampler(**kwargs),
    ),
    "qmc": OptunaAlgorithm(
        optuna.samplers.QMCSampler,
        "replay",
        multi_objective=True,
        defaults={"scramble": True},
        needs=("scipy",),
        base_seed=True,
    ),
    "nsga2": OptunaAlgorithm(optuna.samplers.NSGAIISampler, "replay", multi_objective=True),
}


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence what Optuna says about its own experimental features (multivariate TPE,
    some CMA-ES options) and its per-trial log lines, only around our calls."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def missing_packages(name: str) -> list[str]:
    return [module for module in ALGORITHMS[name].needs if importlib.util.find_spec(module) is None]


def make_sampler(
    name: str,
    args: Mapping[str, object],
    seed: int,
    space: Mapping[str, BaseDistribution],
    *,
    conditional: bool = False,
) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` for a study of ``space`` (:attr:`OptunaAlgorithm.build`);
    for a conditional space, ``space`` holds the dimensions every trial has."""
    spec = ALGORITHMS[name]
    missing = missing_packages(name)
    if missing:
        raise SteeringUnavailable(
            f"optuna {name} needs the Python package(s) {', '.join(missing)}, "
            "which this server does not have"
        )
    extra = spec.conditional_defaults if conditional else {}
    kwargs = {**spec.defaults, **extra, **args, "seed": seed}
    with quiet_optuna():
        if spec.build is not None:
            return spec.build(space, **kwargs)
        return spec.sampler(**kwargs)


class OptunaProposer:
    def __init__(self, request: DrawRequest) -> None:
        self._spec = ALGORITHMS[request.algorithm]
        self._direction = request.directions[0]
        self._multi = self._spec.multi_objective and request.multi_objective
        self._objectives = len(request.directions)
        self._distributions = to_optuna(request.space)
        self._space = request.space
        self._conditional = request.space.conditional
        self._shared = {
            d.name: self._distributions[d.name]
            for d in request.space.dimensions
            if d.parent is None
        }
        """The distributions every trial has: all of them unless the space is conditional."""
        self._algorithm = request.algorithm
        self._args = request.args
        seed = request.seed if self._spec.base_seed else request.draw_seed
        sampler = self._sampler(seed)
        self._open: dict[int, int] = {}
        """Trial number of each open point, by the point's index."""
        with quiet_optuna():
            if self._multi:
                self._study = optuna.create_study(
                    sampler=sampler, directions=list(request.directions)
                )
            else:
                self._study = optuna.create_study(sampler=sampler, direction=self._direction)
            observations = [o for o in request.observations if self._fits(o.params)]
            if self._spec.rebuild == "add":
                self._add(observations)
            else:
                self._replay(observations)
        self._last: Trial | None = None

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return make_sampler(
            self._algorithm, self._args, seed, self._shared, conditional=self._conditional
        )

    def prepare(self, draw_seed: int) -> None:
        if self._spec.rebuild == "add":
            self._study.sampler = self._sampler(draw_seed)

    def ask(self) -> dict[str, Any]:
        with quiet_optuna():
            self._last = self._asked()
            return dict(self._last.params)

    def _asked(self) -> Trial:
        """A new trial with the point's parameters suggested: all at once for a flat
        space, by define-by-run (only the active ones) for a conditional one."""
        if not self._conditional:
            return self._study.ask(self._distributions)
        trial = self._study.ask()
        suggest_active(trial, self._space, self._distributions)
        return trial

    def accept(self, index: int) -> None:
        if self._last is not None:
            self._open[index] = self._last.number
            self._last = None

    def discard(self, known: Observation | None, open_index: int | None = None) -> None:
        """The trial is failed: Optuna's samplers ignore failed trials."""
        del known, open_index
        if self._last is not None:
            with quiet_optuna():
                self._study.tell(self._last, state=TrialState.FAIL)
            self._last = None

    def tell(self, index: int, observation: Observation | None) -> None:
        number = self._open.pop(index, None)
        if number is None:  # never in the study (outside Optuna's truncated priors)
            return
        with quiet_optuna():
            if observation is None or not self._tellable(observation):
                self._study.tell(number, state=TrialState.FAIL)
            else:
                self._study.tell(number, self._values(observation))

    def _tellable(self, observation: Observation) -> bool:
        if observation.losses is None:
            return False
        return not self._multi or len(observation.losses) == self._objectives

    def _values(self, observation: Observation) -> list[float]:
        assert observation.losses is not None
        if self._multi:
            return list(observation.losses)
        return [observation.losses[0]]

    def _add(self, observations: list[Observation]) -> None:
        trials = []
        open_indices: list[int] = []
        for obs in observations:
            if obs.is_open:
                trial = create_trial(
                    params=obs.params, distributions=self._held(obs), state=TrialState.RUNNING
                )
                open_indices.append(obs.index)
            elif not self._tellable(obs):
                continue
            else:
                trial = create_trial(
                    params=obs.params, distributions=self._held(obs), values=self._values(obs)
                )
            trials.append(trial)
        self._study.add_trials(trials)
        running = self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self._open.update(zip(open_indices, (t.number for t in running), strict=True))

    def _replay(self, observations: list[Observation]) -> None:
        for obs in observations:
            if not obs.is_open and not self._tellable(obs):
                continue
            self._study.enqueue_trial(obs.params, skip_if_exists=False)
            trial = self._asked()
            _ = trial.relative_params  # let the sampler advance its state on this point
            if obs.is_open:
                self._open[obs.index] = trial.number
            else:
                self._study.tell(trial, self._values(obs))

    def _held(self, obs: Observation) -> dict[str, BaseDistribution]:
        """The distributions of the parameters a point holds (its active ones)."""
        if not self._conditional:
            return self._distributions
        return {name: self._distributions[name] for name in obs.params}

    def _fits(self, params: Mapping[str, Any]) -> bool:
        """Whether Optuna can hold the point: the normal priors are truncated at
        mu ± 4 sigma for Optuna, so a stored value beyond that cannot be a trial."""
        return all(_inside(self._distributions[name], value) for name, value in params.items())


def _inside(distribution: BaseDistribution, value: object) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return any(
            c == value and isinstance(c, bool) == isinstance(value, bool)
            for c in distribution.choices
        )
    if not isinstance(distribution, FloatDistribution | IntDistribution):
        return False
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not distribution.low <= value <= distribution.high:
        return False
    step = distribution.step
    if step is None:
        return True
    steps = (value - distribution.low) / step
    return abs(steps - round(steps)) < 1e-8
