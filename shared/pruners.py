"""The pruners a task or study may name: Optuna's own, with typed arguments.

A pruner is named by Optuna's class name (``MedianPruner``, as the Hopaas API sends it)
or by its short name (``median``), case-insensitively. Its arguments are checked twice
at submission: by a typed model per pruner (a wrong name or type is refused naming the
argument), then by building Optuna's pruner (which checks ranges and combinations, such
as a ThresholdPruner with neither bound). Optuna is imported only when a pruner is
built, so reading a config does not pay for it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from shared.bounds import json_issues

if TYPE_CHECKING:
    from optuna.pruners import BasePruner


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class NopArgs(_Args):
    pass


class MedianArgs(_Args):
    n_startup_trials: int = Field(default=5, ge=0)
    n_warmup_steps: int = Field(default=0, ge=0)
    interval_steps: int = Field(default=1, ge=1)
    n_min_trials: int = Field(default=1, ge=1)


class PercentileArgs(MedianArgs):
    percentile: float = Field(ge=0, le=100)


class SuccessiveHalvingArgs(_Args):
    min_resource: Literal["auto"] | int = "auto"
    reduction_factor: int = Field(default=4, ge=2)
    min_early_stopping_rate: int = Field(default=0, ge=0)
    bootstrap_count: int = Field(default=0, ge=0)


class HyperbandArgs(_Args):
    min_resource: int = Field(default=1, ge=1)
    max_resource: Literal["auto"] | int = "auto"
    reduction_factor: int = Field(default=3, ge=2)
    bootstrap_count: int = Field(default=0, ge=0)


class ThresholdArgs(_Args):
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = Field(default=0, ge=0)
    interval_steps: int = Field(default=1, ge=1)


class WilcoxonArgs(_Args):
    p_threshold: float = Field(default=0.1, ge=0, le=1)
    n_startup_steps: int = Field(default=2, ge=0)


PRUNER_ARGS: dict[str, type[_Args]] = {
    "NopPruner": NopArgs,
    "MedianPruner": MedianArgs,
    "PercentilePruner": PercentileArgs,
    "SuccessiveHalvingPruner": SuccessiveHalvingArgs,
    "HyperbandPruner": HyperbandArgs,
    "ThresholdPruner": ThresholdArgs,
    "WilcoxonPruner": WilcoxonArgs,
}
"""Optuna's pruner class name -> the model of its constructor's arguments."""

_ALIASES: dict[str, str] = {
    **{name.lower(): name for name in PRUNER_ARGS},
    **{name.removesuffix("Pruner").lower(): name for name in PRUNER_ARGS},
    "successive_halving": "SuccessiveHalvingPruner",
    "none": "NopPruner",
}
KNOWN_NAMES = ", ".join(PRUNER_ARGS)


class PrunerError(ValueError):
    """A pruner name or argument that cannot be used; ``field`` is the offending key
    relative to the pruner block (``name`` or ``args.<argument>``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def canonical_pruner(name: str) -> str:
    """Optuna's class name for ``name``; PrunerError listing the known names."""
    found = _ALIASES.get(name.strip().lower().replace("-", "_"))
    if found is None:
        raise PrunerError("name", f"unknown pruner {name!r}; known: {KNOWN_NAMES}")
    return found


def checked_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the typed model reads them (defaults left out)."""
    issues = json_issues(args)
    if issues:
        loc, msg = issues[0]
        raise PrunerError(".".join(("args", *map(str, loc))), f"{name}: {msg}")
    try:
        model = PRUNER_ARGS[name].model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "args"
        raise PrunerError(f"args.{where}", f"{name}: {first['msg']}") from None
    return model.model_dump(exclude_unset=True)


def build_pruner(name: str, args: dict[str, Any]) -> BasePruner:
    """Optuna's pruner; PrunerError for an unknown name or arguments refused by the
    typed model or by Optuna itself."""
    import optuna

    canonical = canonical_pruner(name)
    kwargs = checked_args(canonical, args)
    cls: type[BasePruner] = getattr(optuna.pruners, canonical)
    try:
        with warnings.catch_warnings():  # WilcoxonPruner is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PrunerError("args", f"{canonical}: {exc}") from None


class PrunerConfig(BaseModel):
    """The task's pruner: which of Optuna's pruners stops bad points early, judged on
    the intermediate values their payloads report (``NopPruner``: never)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="NopPruner", validate_default=True)
    args: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            return canonical_pruner(value)
        except PrunerError as exc:
            raise ValueError(exc.message) from None

    @field_validator("args")
    @classmethod
    def _accepted(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if name is None:
            return value  # the name is refused already
        try:
            build_pruner(name, value)
        except PrunerError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def active(self) -> bool:
        return self.name != "NopPruner"
