"""Hopaas study properties: from an ask body to a study spec.

Pure: no I/O. A property whose value is a string ``optuna#<kind>(<args>)`` is sampled,
anything else is passed through unchanged; ``hopaas_config`` names the study and picks
its sampler and pruner. The sampled properties become a phpo search space, so the
steering service draws them with the same optimisers as batch tasks. A study with no
suggestion at all is valid: every trial carries the same fixed values.

The suggestion strings are read by :mod:`services.api.hopaas_grammar` (lower-case
booleans, bare words, positional step and log, as Hopaas clients write them). Their
arguments, positional or by Optuna's keyword names: ``uniform(low, high)``,
``loguniform(low, high)``, ``float(low, high, step=None, log=False)``, ``int(low, high,
step=1, log=False)``, ``discrete_uniform(low, high, q=None)`` and ``categorical(a, b,
...)`` (or ``categorical([a, b, ...])``). A step of ``None`` or ``NaN`` is no step; so
``discrete_uniform`` without ``q`` is ``uniform``, as Optuna's ``suggest_float`` with
``step=None`` and as the Hopaas client's own tests use it. A choice written twice is
drawn twice as often (see :mod:`shared.searchspace.backends`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from services.api.hopaas_grammar import GrammarError, read_suggestion
from shared.bounds import json_issues
from shared.domain.taskconfig import SteeringConfig
from shared.pruners import PrunerError, canonical_pruner
from shared.searchspace import SearchSpace, SearchSpaceError, parse_search_space
from shared.searchspace.initial import MAX_INITIAL_POINTS, initial_points

CONFIG_KEY = "hopaas_config"
TRIAL_KEY = "hopaas_trial"
PREFIX = "optuna#"
SPECIAL_PREFIX = "_"
"""The Hopaas client sends its *special properties* as ``_<name>`` (and strips a
leading ``_`` from ordinary ones): they travel with an ask but do not name the study."""
MAX_INT_STEPS = 10_000
"""An ``int`` with a step above 1 becomes a categorical of its values, up to this many."""
MAX_TITLE = 500

SAMPLERS: dict[str, str] = {
    "TPESampler": "tpe",
    "RandomSampler": "random",
    "CmaEsSampler": "cmaes",
    "NSGAIISampler": "nsga2",
    "QMCSampler": "qmc",
    "GridSampler": "grid",
    "GPSampler": "gp",
}
"""Hopaas (Optuna) sampler class names -> the project's Optuna algorithm names."""

_PRUNER_ARG_ALIASES = {
    ("HyperbandPruner", "min_resources"): "min_resource",
    ("HyperbandPruner", "max_resources"): "max_resource",
}
"""The Hopaas client's HyperbandPruner sends these plurals; Optuna's names are singular."""

_DEFAULTS_SENT = {("TPESampler", "consider_magic_clip", True)}
"""Arguments the Hopaas client always sends at Optuna's default value, which Optuna has
deprecated (4.9) and will remove (6.0): dropped, so that its default asks keep working."""

NEVERGRAD_PREFIX = "nevergrad:"
"""An extension of Hopaas's sampler names: ``nevergrad:NGOpt``, ``nevergrad:CMA``, ...
(any optimiser of Nevergrad's registry) steers the study with Nevergrad."""


_SIGNATURES: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "float": ("low", "high", "step", "log"),
    "int": ("low", "high", "step", "log"),
    "discrete_uniform": ("low", "high", "q"),
}
_KINDS = ", ".join([*_SIGNATURES, "categorical"])


class PropertyError(ValueError):
    """A property (or ``hopaas_config`` entry) that cannot be understood; ``name`` says
    which, for the 422 reply."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass(frozen=True)
class StudySpec:
    """What an ask body says about its study."""

    title: str
    direction: Literal["minimize", "maximize"]
    steering: SteeringConfig
    pruner: str
    pruner_args: dict[str, Any]
    space: dict[str, Any]
    """The sampled properties as a phpo search space."""
    properties: dict[str, Any] = field(default_factory=dict)
    """Every property but ``hopaas_config`` and ``hopaas_trial``, as sent."""
    initial_points: list[dict[str, Any]] = field(default_factory=list)
    """``hopaas_config.initial_points``: values of the sampled properties asked first,
    in order, when the study is opened (not part of its identity)."""

    def key(self, owner: str) -> str:
        """Same owner, title, properties, direction, sampler and pruner (with their
        arguments): same study, as the Hopaas client derives it. A changed sampler or
        pruner opens a new study instead of silently going on with the old one's;
        special properties (``_<name>``) do not count."""
        described = [
            owner,
            self.title,
            {k: v for k, v in self.properties.items() if not k.startswith(SPECIAL_PREFIX)},
            self.direction,
            self.steering.model_dump(mode="json"),
            self.pruner,
            self.pruner_args,
        ]
        text = json.dumps(described, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def fill(self, params: dict[str, Any]) -> dict[str, Any]:
        """The properties with every suggestion replaced by its drawn value."""
        return {k: params[k] if k in self.space else v for k, v in self.properties.items()}


def _bind(name: str, kind: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = _SIGNATURES[kind]
    if len(args) > len(names):
        raise PropertyError(name, f"{kind} takes at most {len(names)} arguments")
    bound = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names:
            raise PropertyError(name, f"{kind} has no argument {key!r}")
        if key in bound:
            raise PropertyError(name, f"{kind}: {key} given twice")
        bound[key] = value
    for required in names[:2]:
        if bound.get(required) is None:
            raise PropertyError(name, f"{kind} needs {required}")
    for key in ("step", "q"):
        if isinstance(bound.get(key), float) and math.isnan(bound[key]):
            bound[key] = None  # Hopaas's "no step"
    for key in ("low", "high", "step", "q"):
        value = bound.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise PropertyError(name, f"{kind}: {key} must be a finite number, got {value!r}")
    if not isinstance(bound.get("log", False), bool):
        raise PropertyError(name, f"{kind}: log must be true or false, got {bound['log']!r}")
    return bound


def _dimension(name: str, kind: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    if kind == "categorical":
        if kwargs.keys() - {"choices"}:
            raise PropertyError(name, "categorical takes its choices only")
        if "choices" in kwargs and args:
            raise PropertyError(name, "categorical: give the choices once")
        choices = kwargs.get("choices", args[0] if len(args) == 1 else args)
        if not isinstance(choices, list):
            choices = [choices]
        if not choices:
            raise PropertyError(name, "categorical needs at least one choice")
        return {"method": "categorical", "dimension": {"categories": choices}}
    if kind not in _SIGNATURES:
        raise PropertyError(name, f"unknown suggestion optuna#{kind}; known: {_KINDS}")
    b = _bind(name, kind, args, kwargs)
    low, high, step, log = b["low"], b["high"], b.get("step"), b.get("log", False)
    if kind == "loguniform":
        log = True
    if kind == "discrete_uniform":
        step = b.get("q")
    if log and step is not None and not (kind == "int" and step == 1):
        raise PropertyError(name, f"{kind}: step and log cannot be combined")
    if kind == "int":
        if not all(isinstance(v, int) for v in (low, high, step if step is not None else 1)):
            raise PropertyError(name, "int: low, high and step must be integers")
        if step is None or step == 1:
            method = "loguniformint" if log else "uniformint"
            return {"method": method, "dimension": {"low": low, "high": high}}
        if step <= 0 or high < low:
            raise PropertyError(name, "int: need step > 0 and low <= high")
        count = (high - low) // step + 1
        if count > MAX_INT_STEPS:
            raise PropertyError(
                name, f"int: {count} values with step {step}; at most {MAX_INT_STEPS} are allowed"
            )
        values = list(range(low, high + 1, step))
        return {"method": "categorical", "dimension": {"categories": values}}
    if step is not None:
        return {"method": "quniform", "dimension": {"low": low, "high": high, "q": step}}
    method = "loguniform" if log else "uniform"
    return {"method": method, "dimension": {"low": low, "high": high}}


def parse_suggestion(name: str, value: object) -> dict[str, Any] | None:
    """The phpo dimension of a suggestion string; None for a plain value."""
    if not isinstance(value, str) or not value.lstrip().startswith(PREFIX):
        return None
    try:
        suggestion = read_suggestion(value)
    except GrammarError as exc:
        raise PropertyError(name, f"malformed suggestion: {exc}") from None
    return _dimension(name, suggestion.kind, suggestion.args, suggestion.kwargs)


def _plugin(config: dict[str, Any], what: str, default: str) -> tuple[str, dict[str, Any]]:
    block = config.get(what) or {}
    if isinstance(block, str):
        block = {"name": block}
    if not isinstance(block, dict):
        raise PropertyError(f"{CONFIG_KEY}.{what}", "must be an object {name, args}")
    name = block.get("name") or default
    args = block.get("args") or {}
    if not isinstance(name, str) or not isinstance(args, dict):
        raise PropertyError(f"{CONFIG_KEY}.{what}", "name must be a string and args an object")
    return name, args


def _steering(name: str, args: dict[str, Any], direction: str) -> SteeringConfig:
    library = "optuna"
    algorithm = SAMPLERS.get(name)
    if name.startswith(NEVERGRAD_PREFIX):
        library, algorithm = "nevergrad", name.removeprefix(NEVERGRAD_PREFIX)
    if algorithm is None:
        known = ", ".join([*SAMPLERS, f"{NEVERGRAD_PREFIX}<optimiser>"])
        raise PropertyError(f"{CONFIG_KEY}.sampler", f"unknown sampler {name!r}; known: {known}")
    rest = {k: v for k, v in args.items() if k != "seed" and (name, k, v) not in _DEFAULTS_SENT}
    seed = args.get("seed")
    try:
        return SteeringConfig.model_validate(
            {
                "library": library,
                "algorithm": algorithm,
                "args": rest,
                "seed": seed,
                "directions": [direction],
            }
        )
    except ValidationError as exc:
        msgs = "; ".join(str(e["msg"]) for e in exc.errors())
        raise PropertyError(f"{CONFIG_KEY}.sampler", msgs) from None


def parse_study(body: dict[str, Any]) -> StudySpec:
    """The study an ask body describes; ``PropertyError`` names what is wrong."""
    config = body.get(CONFIG_KEY) or {}
    if not isinstance(config, dict):
        raise PropertyError(CONFIG_KEY, "must be an object")
    title = config.get("title") or "untitled"
    if not isinstance(title, str) or len(title) > MAX_TITLE:
        raise PropertyError(f"{CONFIG_KEY}.title", f"must be a string of at most {MAX_TITLE}")
    issues = json_issues(body)
    if issues:
        where, msg = issues[0]
        raise PropertyError(".".join(map(str, where)) or "properties", msg)
    direction: Literal["minimize", "maximize"]
    given = config.get("direction") or "minimize"
    if given == "minimize":
        direction = "minimize"
    elif given == "maximize":
        direction = "maximize"
    else:
        raise PropertyError(f"{CONFIG_KEY}.direction", "must be minimize or maximize")
    sampler, sampler_args = _plugin(config, "sampler", "TPESampler")
    pruner, pruner_args = _plugin(config, "pruner", "NopPruner")
    try:
        pruner = canonical_pruner(pruner)
    except PrunerError as exc:
        raise PropertyError(f"{CONFIG_KEY}.pruner", exc.message) from None
    pruner_args = {_PRUNER_ARG_ALIASES.get((pruner, k), k): v for k, v in pruner_args.items()}
    properties = {k: v for k, v in body.items() if k not in (CONFIG_KEY, TRIAL_KEY)}
    space: dict[str, Any] = {}
    for name, value in properties.items():
        if name.startswith(SPECIAL_PREFIX):
            continue
        dimension = parse_suggestion(name, value)
        if dimension is not None:
            space[name] = dimension
    try:
        parsed = parse_search_space(space, allow_empty=True)
    except SearchSpaceError as exc:
        issue = exc.issues[0]
        raise PropertyError(str(issue.loc[0]) if issue.loc else "properties", issue.msg) from None
    initial = _initial_points(config.get("initial_points"), parsed)
    return StudySpec(
        title=title,
        direction=direction,
        steering=_steering(sampler, sampler_args, direction),
        pruner=pruner,
        pruner_args=pruner_args,
        space=space,
        properties=properties,
        initial_points=initial,
    )


def _initial_points(raw: object, space: SearchSpace) -> list[dict[str, Any]]:
    """``hopaas_config.initial_points`` checked against the sampled properties."""
    where = f"{CONFIG_KEY}.initial_points"
    if raw is None:
        return []
    if (
        not isinstance(raw, list)
        or len(raw) > MAX_INITIAL_POINTS
        or not all(isinstance(p, dict) for p in raw)
    ):
        raise PropertyError(
            where,
            f"must be a list of at most {MAX_INITIAL_POINTS} objects of sampled property values",
        )
    try:
        return initial_points(space, raw)
    except SearchSpaceError as exc:
        issue = exc.issues[0]
        raise PropertyError(".".join([where, *map(str, issue.loc)]), issue.msg) from None
