"""CMA-ES with its scans of the study answered from an index (``IndexedCmaEsSampler``).

It must propose exactly what Optuna's own CmaEsSampler proposes, through a replay of
stored points and kept asks alike, with trials open across generations, failed and told
out of order; and rebuilding a segment's optimiser must cost a bounded amount of work per
stored point, not one growing with the history (a replay used to scan every earlier trial
for every point)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from services.steering.algorithms.optuna_samplers import IndexedCmaEsSampler, quiet_optuna
from services.steering.sampler import SegmentOptimizer
from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import SteeringConfig
from shared.searchspace import canonical_key, parse_search_space

DISTRIBUTIONS = {
    "x": FloatDistribution(-2, 2),
    "y": FloatDistribution(1e-3, 1, log=True),
    "n": IntDistribution(1, 20),
}


def drive(sampler: optuna.samplers.BaseSampler) -> list[tuple[Any, ...]]:
    """A scripted study: enqueued (replayed) points, then asks with up to three trials
    open at once, told out of order, every seventh one failed; what every trial ended
    as, system attributes (CMA-ES's generations and pickled optimisers) included."""
    rng = np.random.default_rng(1)
    with quiet_optuna():
        study = optuna.create_study(sampler=sampler)
        for i in range(40):
            study.enqueue_trial({"x": float(rng.uniform(-2, 2)), "y": 0.1, "n": i % 20 + 1})
            trial = study.ask(DISTRIBUTIONS)
            _ = trial.relative_params
            if i % 9 != 4:  # some replayed points stay open
                study.tell(trial, float(rng.random()))
        open_trials: list[optuna.trial.Trial] = []
        for i in range(150):
            open_trials.append(study.ask(DISTRIBUTIONS))
            if len(open_trials) == 3:
                trial = open_trials.pop(int(rng.integers(3)))
                if trial.number % 7 == 0:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    params = trial.params
                    study.tell(trial, (params["x"] - 0.5) ** 2 + params["y"] + i * 1e-3)
    return [
        (t.number, t.state, t.params, t.value, *_attrs(t.system_attrs))
        for t in study.get_trials(deepcopy=False)
    ]


def _attrs(attrs: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
    """The system attributes, the pickled optimiser as its state. Its pickle is not
    reproducible byte for byte (cmaes keeps an uninitialised ``np.empty`` history),
    nor is its random generator's state, which is never used: Optuna reseeds the
    generator before each ask."""
    parts = sorted((k for k in attrs if ":optimizer:" in k), key=lambda k: int(k.split(":")[-1]))
    rest = {k: v for k, v in attrs.items() if k not in parts}
    if not parts:
        return rest, None
    cma = pickle.loads(bytes.fromhex("".join(attrs[k] for k in parts)))
    cma = getattr(cma, "_cma", cma)  # CMA with margin wraps a CMA
    return rest, (cma.generation, cma._sigma, cma._mean.tolist(), cma._C.tolist())


@pytest.mark.parametrize(
    "args",
    [{}, {"popsize": 4}, {"popsize": 5, "n_startup_trials": 10}, {"with_margin": True}],
)
def test_indexed_cmaes_proposes_what_optunas_own_proposes(args: dict[str, Any]) -> None:
    with quiet_optuna():
        plain = drive(optuna.samplers.CmaEsSampler(seed=3, **args))
        indexed = drive(IndexedCmaEsSampler(seed=3, **args))
    assert indexed == plain
    generations = {t[4].get("cma:generation", t[4].get("cmawm:generation")) for t in plain}
    assert len(generations) > 10  # the script went through many generations


def test_a_cmaes_rebuild_reads_each_stored_point_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counted, not timed: the trials' system attributes (what CMA-ES's scans read)
    are read a few times per replayed point, not once per earlier trial."""
    reads = 0
    attrs = FrozenTrial.system_attrs

    def counted(trial: FrozenTrial) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return attrs.fget(trial)  # type: ignore[no-any-return,misc]

    space = parse_search_space(
        {n: {"method": "uniform", "dimension": {"low": 0, "high": 1}} for n in ("a", "b")}
    )
    rng = np.random.default_rng(0)
    history = []
    for index in range(400):
        params = {"a": float(rng.random()), "b": float(rng.random())}
        history.append(
            Point(
                id=f"t.main.{index}",
                task_id="t",
                segment="main",
                index=index,
                params=params,
                key=canonical_key(params),
                status=PointStatus.EVALUATED,
                loss=params["a"] + params["b"],
            )
        )
    monkeypatch.setattr(FrozenTrial, "system_attrs", property(counted, attrs.fset))
    optimizer = SegmentOptimizer(
        space, history, steering=SteeringConfig(algorithm="cmaes"), seed=1, parallelism=2
    )
    assert reads < 20 * len(history), reads  # the full scans read some 80,000
    assert len(optimizer.draw(2).points) == 2
