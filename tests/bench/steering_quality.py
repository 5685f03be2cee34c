"""Optimisation quality of the steering engine: best loss after 100 evaluations.

Runs the steering service's own optimiser (``SegmentOptimizer``: built once, told each
result as it settles, exactly as the segment's owner does; Optuna TPE and GP, Nevergrad
NGOpt) at parallelism 1 and 8, next to sequential in-process Optuna TPE and random
search, on Branin, Hartmann-6 and Rosenbrock-5 over [0, 1]^d. Parallelism 8 is measured
two ways: ``sync`` batches (phpo's ``nPointsPerIteration: 8`` with
``minUnevaluatedPoints: 0``: draw 8, evaluate all 8, draw the next 8) and ``async`` (8
points always in flight, results coming back in a random order, a new point drawn as
each one returns: ``minUnevaluatedPoints`` close to ``nPointsPerIteration``). Reports
the median regret over the seeds. Prints one JSON line per function, with each
parallelism-8 column's ratio to sequential TPE (the issue's target: within 10 %).
``--columns`` and ``--functions`` pick a subset. ``--conditional`` runs the conditional
benchmark instead: a choice between two model families, each with its own parameters
(Branin's two, Hartmann-6's six), for define-by-run TPE, random search and TPE on the
flattened space. ``--pbt`` runs population-based training against random search with
the same GPU-hours (total training epochs) on a toy schedule-sensitive problem
(:func:`pbt_benchmark`).

Run: python tests/bench/steering_quality.py [--seeds 10] [--evals 100]
    [--functions branin,...] [--columns service_gp_p8_sync,...] [--conditional] [--pbt]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.steering.sampler import SegmentOptimizer
from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import SteeringConfig
from shared.searchspace import SearchSpace, canonical_key, flatten, parse_search_space

Objective = Callable[[dict[str, Any]], float]


def branin(p: dict[str, Any]) -> float:
    x, y = float(p["x0"]) * 15 - 5, float(p["x1"]) * 15
    a = y - 5.1 / (4 * math.pi**2) * x**2 + 5 / math.pi * x - 6
    return a**2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10 - 0.397887


_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: dict[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (x - _P) ** 2, axis=1))) + 3.32237)


def rosenbrock5(p: dict[str, Any]) -> float:
    x = np.array([p[f"x{i}"] * 4 - 2 for i in range(5)])
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


FUNCTIONS: dict[str, tuple[Objective, int]] = {
    "branin": (branin, 2),
    "hartmann6": (hartmann6, 6),
    "rosenbrock5": (rosenbrock5, 5),
}


def service(
    f: Objective,
    dims: int,
    seed: int,
    evals: int,
    parallel: int,
    steering: SteeringConfig,
    *,
    asynchronous: bool = False,
    space: SearchSpace | None = None,
) -> float:
    if space is None:
        space = parse_search_space(
            {
                f"x{i}": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}
                for i in range(dims)
            }
        )
    optimizer = SegmentOptimizer(
        space, [], steering=steering, seed=seed, parallelism=parallel, budget=evals
    )
    rng = random.Random(seed)
    stored = 0
    in_flight: list[Point] = []
    best = math.inf
    while stored < evals or in_flight:
        room = parallel - len(in_flight) if asynchronous or not in_flight else 0
        for params in optimizer.draw(min(room, evals - stored)).points if room else []:
            in_flight.append(
                Point(
                    id=str(stored),
                    task_id="b",
                    segment="main",
                    index=stored,
                    params=params,
                    key=canonical_key(params),
                )
            )
            stored += 1
        if asynchronous:  # one result comes back, in a random order
            done = [in_flight.pop(rng.randrange(len(in_flight)))]
        else:  # the whole batch comes back
            done, in_flight = in_flight, []
        results = [
            p.model_copy(update={"status": PointStatus.EVALUATED, "loss": f(p.params)})
            for p in done
        ]
        best = min([best, *(float(p.loss) for p in results if isinstance(p.loss, float))])
        optimizer.settle(results)
    return best


def bare(
    f: Objective, dims: int, seed: int, evals: int, sampler: optuna.samplers.BaseSampler
) -> float:
    study = optuna.create_study(sampler=sampler)
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        f"x{i}": optuna.distributions.FloatDistribution(0, 1) for i in range(dims)
    }
    for _ in range(evals):
        trial = study.ask(dists)
        study.tell(trial, f(trial.params))
    return float(study.best_value)


Column = Callable[[Objective, int, int, int], float]
"""One contender: (function, dimensions, seed, evaluations) -> best loss."""


def inprocess(make: Callable[[int], optuna.samplers.BaseSampler]) -> Column:
    return lambda f, dims, seed, evals: bare(f, dims, seed, evals, make(seed))


def steered(
    library: str, algorithm: str, parallel: int, *, asynchronous: bool = False, **args: object
) -> Column:
    steering = SteeringConfig(library=library, algorithm=algorithm, args=args)
    return lambda f, dims, seed, evals: service(
        f, dims, seed, evals, parallel, steering, asynchronous=asynchronous
    )


COLUMNS: dict[str, Column] = {
    "random_seq_inprocess": inprocess(lambda s: optuna.samplers.RandomSampler(seed=s)),
    "tpe_seq_inprocess": inprocess(lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True)),
    "service_tpe_p1": steered("optuna", "tpe", 1),
    "service_tpe_p8_sync": steered("optuna", "tpe", 8),
    "service_tpe_p8_async": steered("optuna", "tpe", 8, asynchronous=True),
    "service_ngopt_p1": steered("nevergrad", "NGOpt", 1),
    "service_ngopt_p8_sync": steered("nevergrad", "NGOpt", 8),
    "service_gp_p1": steered("optuna", "gp", 1),
    "service_gp_p8_sync": steered("optuna", "gp", 8),
    "service_gp_p8_async": steered("optuna", "gp", 8, asynchronous=True),
    # these functions are noise-free: GP told so (no noise variance to fit), through args
    "service_gp_det_p8_sync": steered("optuna", "gp", 8, deterministic_objective=True),
    "service_gp_det_p8_async": steered(
        "optuna", "gp", 8, asynchronous=True, deterministic_objective=True
    ),
}
REFERENCE = "tpe_seq_inprocess"

UNIT = {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}
FAMILIES = parse_search_space(
    {
        "model": {
            "method": "oneOf",
            "options": {
                "branin": {f"b{i}": UNIT for i in range(2)},
                "hartmann6": {f"h{i}": UNIT for i in range(6)},
            },
        }
    }
)
"""A choice between two model families, each with its own parameters."""


def families(p: dict[str, Any]) -> float:
    """Branin's regret over 10 for one family (best 0), Hartmann-6's over 3.32 plus 0.1
    for the other (best 0.1); only the chosen family's parameters are read."""
    if p["model"] == "branin":
        return branin({"x0": p["b0"], "x1": p["b1"]}) / 10
    return hartmann6({f"x{i}": p[f"h{i}"] for i in range(6)}) / 3.32237 + 0.1


def on_families(space: SearchSpace, algorithm: str) -> Column:
    steering = SteeringConfig(library="optuna", algorithm=algorithm)
    return lambda _f, _dims, seed, evals: service(
        families, 0, seed, evals, 1, steering, space=space
    )


CONDITIONAL: dict[str, Column] = {
    "tpe_define_by_run": on_families(FAMILIES, "tpe"),
    "random_define_by_run": on_families(FAMILIES, "random"),
    # every family's parameters drawn at every point, the unused ones ignored
    "tpe_flattened": on_families(flatten(FAMILIES), "tpe"),
}
"""The conditional benchmark's contenders, each through the steering's own optimiser
at parallelism 1: define-by-run TPE (``group``), random search on the same space, and
TPE on the flattened space."""


def conditional(seeds: int, evals: int) -> None:
    result: dict[str, Any] = {
        "bench": "steering_quality",
        "function": "families",
        "evals": evals,
        "seeds": seeds,
    }
    for label, column in CONDITIONAL.items():
        runs = [column(families, 0, s, evals) for s in range(seeds)]
        result[label] = round(statistics.median(runs), 5)
        result[f"{label}_mean"] = round(statistics.mean(runs), 5)
        result[f"{label}_runs"] = [round(r, 4) for r in runs]
    print(json.dumps(result), flush=True)


TOY_DIMS = 10
TOY_CURVATURES = np.logspace(0, -2, TOY_DIMS)
TOY_START = 1 / np.sqrt(TOY_CURVATURES)
TOY_NOISE = 0.3
TOY_STEPS_PER_EPOCH = 20
LEARNING_RATE = parse_search_space(
    {"lr": {"method": "loguniform", "dimension": {"low": 1e-3, "high": 1.9}}}
)


def toy_loss(w: np.ndarray[Any, Any]) -> float:
    return float(0.5 * np.sum(TOY_CURVATURES * w * w))


def toy_train(
    w: np.ndarray[Any, Any], lr: float, epochs: int, rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    """SGD with noisy gradients on an ill-conditioned quadratic (loss 5 at the start):
    a large learning rate is needed early for the flat directions, a small one late to
    get under the noise floor (about ``lr * dims * noise**2 / 4``), so a decaying
    schedule beats every constant one."""
    w = w.copy()
    for _ in range(epochs * TOY_STEPS_PER_EPOCH):
        w -= lr * (TOY_CURVATURES * w + TOY_NOISE * rng.standard_normal(TOY_DIMS))
    return w


def pbt_run(seed: int, population: int, generations: int, epochs: int, **args: object) -> float:
    """The final loss of the best member after ``generations`` generations of
    ``epochs`` epochs each, every member starting from its parent's checkpoint."""
    steering = SteeringConfig(
        algorithm="pbt",
        args={"population": population, "generations": generations, **args},
    )
    optimizer = SegmentOptimizer(
        LEARNING_RATE,
        [],
        steering=steering,
        seed=seed,
        parallelism=population,
        budget=population * generations,
    )
    checkpoints: dict[int, np.ndarray[Any, Any]] = {}
    stored, last = 0, math.inf
    while True:
        drawn = optimizer.draw(population)
        if not drawn.points:
            assert drawn.exhausted, "a generation settles before the next draw"
            return last
        results = []
        for params, parent in zip(drawn.points, drawn.parents, strict=True):
            start = TOY_START if parent is None else checkpoints[parent]
            rng = np.random.default_rng([seed, stored])
            checkpoints[stored] = toy_train(start, float(params["lr"]), epochs, rng)
            loss = toy_loss(checkpoints[stored])
            point = Point(
                id=str(stored),
                task_id="b",
                segment="main",
                index=stored,
                params=params,
                key=canonical_key(params),
            )
            results.append(point.model_copy(update={"status": PointStatus.EVALUATED, "loss": loss}))
            stored += 1
        last = min(float(p.loss) for p in results if isinstance(p.loss, float))
        optimizer.settle(results)


def random_run(seed: int, trials: int, epochs: int) -> float:
    """The best final loss of ``trials`` random learning rates, each trained for
    ``epochs`` epochs from the start (through the steering's own random sampler)."""
    steering = SteeringConfig(algorithm="random")
    optimizer = SegmentOptimizer(
        LEARNING_RATE, [], steering=steering, seed=seed, parallelism=trials, budget=trials
    )
    best = math.inf
    for index, params in enumerate(optimizer.draw(trials).points):
        rng = np.random.default_rng([seed, index])
        best = min(best, toy_loss(toy_train(TOY_START, float(params["lr"]), epochs, rng)))
    return best


def constant_reference(seed: int, epochs: int, count: int = 25) -> float:
    """The best of ``count`` constant learning rates spread log-evenly over the range:
    what a thorough search for a constant rate reaches (with ``count`` times the
    epochs of one run; a reference, not a contender)."""
    rates = np.geomspace(1e-3, 1.9, count)
    return min(
        toy_loss(toy_train(TOY_START, float(lr), epochs, np.random.default_rng([seed, i])))
        for i, lr in enumerate(rates)
    )


def pbt_benchmark(seeds: int, population: int, generations: int, epochs: int) -> None:
    """PBT against random search with the same GPU-hours: ``population`` members
    trained ``generations * epochs`` epochs each, so as many epochs in all."""
    total = population * generations * epochs
    result: dict[str, Any] = {
        "bench": "steering_quality",
        "function": "noisy_quadratic_schedule",
        "population": population,
        "generations": generations,
        "epochs_per_generation": epochs,
        "total_epochs": total,
        "seeds": seeds,
    }
    columns: dict[str, Callable[[int], float]] = {
        "random": lambda s: random_run(s, population, generations * epochs),
        "pbt": lambda s: pbt_run(s, population, generations, epochs),
        "pbt_perturb_1.5": lambda s: pbt_run(s, population, generations, epochs, perturbation=1.5),
        "best_constant_lr_reference": lambda s: constant_reference(s, generations * epochs),
    }
    for label, column in columns.items():
        runs = [column(s) for s in range(seeds)]
        result[label] = round(statistics.median(runs), 5)
        result[f"{label}_mean"] = round(statistics.mean(runs), 5)
    result["pbt_vs_random"] = round(result["pbt"] / result["random"], 2)
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evals", type=int, default=100)
    parser.add_argument(
        "--functions", default=",".join(FUNCTIONS), help="comma-separated, of: %(default)s"
    )
    parser.add_argument(
        "--columns", default=",".join(COLUMNS), help="comma-separated, of: %(default)s"
    )
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="run the conditional benchmark (two model families) instead",
    )
    parser.add_argument(
        "--pbt",
        action="store_true",
        help="run PBT against random search with the same epochs instead",
    )
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2, help="per generation (--pbt)")
    args = parser.parse_args()
    if args.pbt:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        pbt_benchmark(args.seeds, args.population, args.generations, args.epochs)
        return
    if args.conditional:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        conditional(args.seeds, args.evals)
        return
    functions = [name for name in args.functions.split(",") if name]
    columns = [name for name in args.columns.split(",") if name]
    unknown = [n for n in functions if n not in FUNCTIONS] + [
        n for n in columns if n not in COLUMNS
    ]
    if unknown:
        parser.error(f"unknown function or column: {', '.join(unknown)}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    for name in functions:
        f, dims = FUNCTIONS[name]
        result: dict[str, Any] = {
            "bench": "steering_quality",
            "function": name,
            "evals": args.evals,
            "seeds": args.seeds,
        }
        for label in columns:
            runs = (COLUMNS[label](f, dims, s, args.evals) for s in range(args.seeds))
            result[label] = round(statistics.median(runs), 5)
        if REFERENCE in result:  # the target: each p8 column against sequential TPE
            for label in columns:
                if label.startswith("service_") and "_p8_" in label:
                    ratio = result[label] / result[REFERENCE]
                    result[f"{label.removeprefix('service_')}_vs_tpe_seq"] = round(ratio, 2)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
