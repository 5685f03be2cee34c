"""Which algorithms exist, which ``args`` each accepts, and the check a task config gets.

:class:`~shared.domain.taskconfig.SteeringConfig` calls :func:`canonical_algorithm`
and :func:`check_args` when it is validated, so an unknown name or a bad argument is
refused at submission (a 422 naming ``config.steering.algorithm`` or
``config.steering.args``) with what is available, rather than failing the first draw.
The check ends with :func:`probe`: a real draw on a small mixed space with evaluated,
failed and open points, which is what catches bad argument values, missing optional
packages (PyTorch for ``gp``, ``cmaes`` for ``cmaes``) and Nevergrad optimisers that
cannot be rebuilt from stored points. Results are cached per process, because a task's
config is validated every time the task is loaded.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from services.steering.algorithms import nevergrad_optimizers, optuna_samplers
from services.steering.algorithms.base import (
    DrawRequest,
    Observation,
    Proposer,
    SteeringUnavailable,
)
from services.steering.algorithms.grid import GridArgs, GridProposer
from services.steering.algorithms.nevergrad_optimizers import NevergradProposer
from services.steering.algorithms.optuna_samplers import OptunaProposer
from services.steering.algorithms.pbt import PbtArgs, PbtProposer
from shared.searchspace import parse_search_space

LIBRARIES = ("optuna", "nevergrad")
OPTUNA_NAMES = (*optuna_samplers.ALGORITHMS, "grid", "pbt")
NEVERGRAD_EXAMPLES = ("NGOpt", "CMA", "TwoPointsDE", "PSO", "OnePlusOne", "DE", "RandomSearch")
JSON_TYPES = frozenset({"bool", "int", "float", "str", "None", "Any", "object"})
JSON_CONTAINERS = ("dict[str, Any]", "Mapping[str, Any]", "list[float]", "list[int]")


def default_algorithm(library: str) -> str:
    return "tpe" if library == "optuna" else nevergrad_optimizers.DEFAULT


def canonical_algorithm(library: str, algorithm: str) -> str:
    """The algorithm's name as the catalogue spells it (Optuna names are lower case,
    Nevergrad's are the registry's, matched without regard to case)."""
    if library == "optuna":
        name = algorithm.lower()
        if name not in OPTUNA_NAMES:
            raise ValueError(
                f"unknown optuna algorithm {algorithm!r}; available: {', '.join(OPTUNA_NAMES)}"
            )
        return name
    found = nevergrad_optimizers.canonical_name(algorithm)
    if found is None:
        names = list(nevergrad_optimizers.registry_names().values())
        close = difflib.get_close_matches(algorithm, names, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(
            f"unknown nevergrad optimizer {algorithm!r}; {hint}available: any name in "
            f"nevergrad.optimizers.registry ({len(names)} optimizers), for example "
            f"{', '.join(NEVERGRAD_EXAMPLES)}"
        )
    return str(found)


def accepted_args(library: str, algorithm: str) -> tuple[str, ...]:
    """The argument names ``args`` may set: the constructor's parameters, less ``seed``
    and those that take Python objects (callables, samplers, trials)."""
    if library == "nevergrad":
        return nevergrad_optimizers.accepted_args(algorithm)
    hand_written: dict[str, Any] = {"grid": GridArgs, "pbt": PbtArgs}
    target: Any = hand_written.get(algorithm) or optuna_samplers.ALGORITHMS[algorithm].sampler
    return tuple(
        name
        for name, param in inspect.signature(target).parameters.items()
        if name != "seed"
        and (not isinstance(param.annotation, str) or _json_settable(param.annotation))
    )


def check_args(library: str, algorithm: str, args: Mapping[str, object]) -> None:
    """Raise ``ValueError`` naming what is wrong with ``args`` and what is accepted."""
    _check_args(library, algorithm, _freeze(args))


@lru_cache(maxsize=256)
def _check_args(library: str, algorithm: str, frozen_args: str) -> None:
    args: dict[str, object] = json.loads(frozen_args)
    accepted = accepted_args(library, algorithm)
    listing = ", ".join(sorted(accepted)) or "none"
    if "seed" in args:
        raise ValueError("seed: set it as steering.seed, not in args")
    for name in args:
        if name not in accepted:
            raise ValueError(
                f"unknown argument {name!r} for {library} {algorithm}; accepted: {listing}"
            )
    try:
        probe(library, algorithm, args)
    except SteeringUnavailable as exc:
        raise ValueError(f"{library} {algorithm} cannot be used here: {exc}") from exc
    except Exception as exc:  # any failure of the library on these args
        reason = f"{type(exc).__name__}: {exc}"
        if args:
            raise ValueError(
                f"{library} {algorithm} refused args {json.dumps(args)}: {reason}"
            ) from exc
        raise ValueError(f"{library} {algorithm} cannot be used here: {reason}") from exc


def _freeze(args: Mapping[str, object]) -> str:
    try:
        return json.dumps(args, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"args must be plain JSON values: {exc}") from exc


def _json_settable(annotation: str) -> bool:
    """Whether every alternative of a constructor annotation is a JSON value."""
    depth, part, parts = 0, "", []
    for char in annotation:
        depth += char in "[("
        depth -= char in "])"
        if char == "|" and depth == 0:
            parts.append(part.strip())
            part = ""
        else:
            part += char
    parts.append(part.strip())
    return all(p in JSON_TYPES or p in JSON_CONTAINERS for p in parts)


def build_proposer(library: str, request: DrawRequest) -> Proposer:
    if library == "nevergrad":
        return NevergradProposer(request)
    if request.algorithm == "grid":
        return GridProposer(request)
    if request.algorithm == "pbt":
        return PbtProposer(request)
    return OptunaProposer(request)


_PROBE_SPACE = parse_search_space(
    {
        "x": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
        "lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}},
        "n": {"method": "uniformint", "dimension": {"low": 1, "high": 8}},
        "c": {"method": "categorical", "dimension": {"categories": ["a", "b"]}},
    }
)


def probe(library: str, algorithm: str, args: Mapping[str, object]) -> None:
    """Rebuild the algorithm from a dozen evaluated points (past the usual number of
    start-up trials, so that the model is fitted), a failed and an open one, and draw
    two points."""
    told = [
        Observation(
            {"x": i / 12, "lr": 10 ** -(1 + i % 4), "n": 1 + i % 8, "c": "ab"[i % 2]},
            ((i / 12 - 0.4) ** 2,) if i != 5 else (1e10,),
        )
        for i in range(12)
    ]
    running = Observation({"x": 0.95, "lr": 5e-2, "n": 7, "c": "b"}, None)
    observations = (*told, running)
    request = DrawRequest(
        space=_PROBE_SPACE,
        algorithm=algorithm,
        args=args,
        observations=observations,
        stored=tuple(o.params for o in observations),
        directions=("minimize",),
        seed=0,
        draw_seed=1,
        parallelism=2,
        budget=20,
    )
    proposer = build_proposer(library, request)
    for _ in range(2):
        proposer.ask()
