"""The phpo-compatible task configuration (docs/architecture.md, "phpo options").

Field names are phpo's camelCase option names, so a user's ``--loadJson`` file
validates unchanged. Options that later releases will act on (checkpoints) are parsed
here so that a config is checked in one place; those not yet supported are refused
with a message naming the option instead of being silently ignored. phpo's options
that mean nothing here (:mod:`shared.domain.phpo`) are accepted and kept aside in
``ignoredOptions``, with a warning each, so that no user's file is refused for them.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.bounds import check_json, name_issue
from shared.domain.metrics import MAX_METRICS, metric_name_issue
from shared.domain.phpo import CLIENT_KEYS, IGNORED_KEYS, server_ignores
from shared.domain.resources import Resources
from shared.pruners import PrunerConfig
from shared.runtime.images import ImageResolutionError, normalise_arch

Arch = Literal["amd64", "ppc64le", "arm64"]
Direction = Literal["minimize", "maximize"]

MAX_EXEC = 10_000
"""Longest exec string (steeringExec, evaluationExec) or container reference."""
MAX_TEXT = 1_000
"""Longest other option value (a dataset name, a file list, a site)."""
SEED_MAX = 2**32 - 1
"""Seeds are NumPy's: 0 to 2**32-1."""


class SteeringConfig(BaseModel):
    """Which optimiser generates the points of every segment of the task.

    ``library`` is ``optuna`` (algorithms ``tpe`` (default), ``cmaes``, ``gp``, ``qmc``,
    ``random``, ``grid``, ``nsga2``, and ``pbt``: population-based training through
    the checkpoint store, with ``args`` ``population``, ``generations`` and
    ``perturbation``) or ``nevergrad`` (``NGOpt`` by default, or any name in
    ``nevergrad.optimizers.registry``). ``args`` go to the sampler's or optimiser's
    constructor and are checked against it. ``directions`` (one per objective of the
    loss, default all ``minimize``) may also be given inside ``args``, as Optuna users
    are used to for NSGA-II. ``budget`` is the number of evaluations the optimiser
    plans for (Nevergrad picks its strategy from it; default: the task's ``maxPoints``);
    it may be given in ``args`` too. The names and arguments are checked by the steering
    service's catalogue (imported only when a config is validated); the check is cached
    per process because a task's config is validated whenever the task is loaded.
    """

    model_config = ConfigDict(extra="forbid")

    library: Literal["optuna", "nevergrad"] = "optuna"
    algorithm: str = Field(default="", max_length=100, validate_default=True)
    args: dict[str, object] = Field(default_factory=dict, validate_default=True)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    directions: list[Direction] | None = Field(default=None, min_length=1, max_length=16)
    budget: int | None = Field(default=None, ge=1, le=100_000_000)

    @model_validator(mode="before")
    @classmethod
    def _block_fields_from_args(cls, data: object) -> object:
        """``directions`` and ``budget`` given in ``args`` belong to the block."""
        if not isinstance(data, dict):
            return data
        args = data.get("args")
        if not isinstance(args, dict):
            return data
        moved = [name for name in ("directions", "budget") if name in args]
        for name in moved:
            if data.get(name) is not None:
                raise ValueError(f"{name}: give it in the steering block or in args, not both")
        if not moved:
            return data
        rest = {k: v for k, v in args.items() if k not in moved}
        return {**data, "args": rest, **{name: args[name] for name in moved}}

    @field_validator("algorithm")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        from services.steering.algorithms import canonical_algorithm, default_algorithm

        library = info.data.get("library")
        if library is None:
            return value  # already refused
        return canonical_algorithm(library, value or default_algorithm(library))

    @field_validator("args")
    @classmethod
    def _accepted(cls, value: dict[str, object], info: ValidationInfo) -> dict[str, object]:
        from services.steering.algorithms import check_args

        check_json(value, "args")
        library, algorithm = info.data.get("library"), info.data.get("algorithm")
        if library is not None and algorithm is not None:
            check_args(library, algorithm, value)
        return value


def _check_relative(option: str, path: str) -> None:
    parts = path.split("/")
    if (
        path.startswith("/")
        or "\\" in path
        or "\0" in path
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(
            f"{option}: {path!r} must be a relative path inside the work directory "
            "(no leading '/', no '.' or '..' parts)"
        )


class TaskConfig(BaseModel):
    """Every option is bounded: integers by what they mean (and never beyond what the
    database stores in 8 bytes), strings in length and free of NUL bytes, file names
    as plain names, so a config that validates can be stored and run."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    nParallelEvaluation: int = Field(default=1, ge=1, le=10_000)
    maxPoints: int = Field(default=10, ge=1, le=1_000_000)
    maxEvaluationJobs: int | None = Field(default=None, ge=1, le=100_000_000)
    maxPointsPerEvaluationJob: int = Field(default=1, ge=1, le=1_000)
    nPointsPerIteration: int = Field(default=2, ge=1, le=100_000)
    minUnevaluatedPoints: int = Field(default=0, ge=0, le=100_000)
    steeringContainer: str | None = Field(default=None, max_length=MAX_EXEC)
    steeringExec: str | None = Field(default=None, max_length=MAX_EXEC)
    searchSpaceFile: str | None = Field(default=None, max_length=MAX_TEXT)
    evaluationContainer: str | dict[Arch, str] | None = None
    evaluationExec: str = Field(min_length=1, max_length=MAX_EXEC)
    evaluationInput: str = "input.json"
    evaluationTrainingData: str = "input_ds.json"
    evaluationOutput: str = "output.json"
    evaluationIntermediate: str = "intermediate.jsonl"
    """JSON lines ``{"step": 3, "value": 0.41}`` the payload appends in its work dir; the
    site relays them and the task's pruner judges them."""
    evaluationMeta: str | None = None
    evaluationMetrics: str | None = None
    trainingDS: str | None = Field(default=None, max_length=MAX_TEXT)
    checkPointToSave: str | None = Field(default=None, max_length=MAX_TEXT)
    checkPointToLoad: str | None = None
    checkPointInterval: int = Field(default=5, ge=1, le=525_600)
    """Minutes; at most a year."""
    segmentSpecFile: str | None = Field(default=None, max_length=MAX_TEXT)
    site: str | None = Field(default=None, max_length=MAX_TEXT)
    """One site, or phpo's comma-separated list of sites the jobs may run at."""
    architecture: Arch | None = None
    resources: Resources = Field(default_factory=Resources)
    """What each evaluation job needs (GPUs, nodes, memory, walltime, layout...)."""
    outDS: str | None = Field(
        default=None, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/?$"
    )
    """phpo's output dataset: the task's name unless one is given, shown with the task."""
    ignoredOptions: dict[str, object] = Field(default_factory=dict)
    """phpo options given that have no effect here (filled from the config's keys)."""
    steering: SteeringConfig = Field(default_factory=SteeringConfig)
    warmStartFrom: list[Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]] = Field(
        default_factory=list, max_length=100
    )
    """Earlier tasks of the same owner whose fitting points are told to this task's
    optimiser before its first draw (services/steering/warmstart.py)."""
    initialPoints: list[dict[str, bool | int | float | str | None]] = Field(
        default_factory=list, max_length=1_000
    )
    """Points evaluated first, before the optimiser draws (Optuna's ``enqueue_trial``);
    they count against ``maxPoints``. Checked against each segment's space at submission
    (:mod:`shared.searchspace.initial`); a parameter left out takes its dimension's
    ``default``."""
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    failedPointLoss: float = Field(default=1e10, allow_inf_nan=False)
    failedPoints: Literal["large_loss", "exclude"] = "large_loss"
    maxAttempts: int = Field(default=3, ge=1, le=10)
    maxPreemptions: int = Field(default=10, ge=0, le=1000)
    """Jobs of one point that may be preempted with a checkpoint (walltime, scancel)
    and resumed without using an attempt; the next preemption counts as a failure."""
    figureOfMerit: dict[str, float] | None = Field(
        default=None, min_length=1, max_length=MAX_METRICS
    )
    """The loss is this weighted sum of the metrics an evaluation reports
    (``output.json``'s ``metrics``); the payload's own ``loss`` is then not used."""
    objectives: list[str] | None = Field(default=None, min_length=1, max_length=16)
    """The loss is the list of these metrics, one objective each (directions from
    ``steering.directions``, all ``minimize`` by default)."""
    maxWallTime: float | None = Field(default=None, gt=0, le=10 * 365 * 86_400, allow_inf_nan=False)
    """Seconds from the task's submission after which it ends (open jobs cancelled)."""
    targetLoss: float | None = Field(default=None, allow_inf_nan=False)
    """The task ends once its best loss reaches this (at most it when minimised, at
    least it when maximised)."""
    stopAfterNoImprovement: int | None = Field(default=None, ge=1, le=1_000_000)
    """The task ends after this many evaluated points in a row without a better best."""
    online: bool = False
    """An online study: points are created by asks and told by workers; steering never
    tops it up and no evaluation job is ever built for it."""

    @model_validator(mode="before")
    @classmethod
    def _phpo_only_options(cls, data: object) -> object:
        """Keep phpo's client-side and PanDA-only options aside, and read phpo's
        ``#cpu_spec&gpu_spec`` architecture for its CPU architecture."""
        if not isinstance(data, dict):
            return data
        data = _objective_directions(data)
        aside = {k: data[k] for k in data if k in CLIENT_KEYS or k in IGNORED_KEYS}
        rest = {k: v for k, v in data.items() if k not in aside}
        architecture = rest.get("architecture")
        if isinstance(architecture, str):
            arch, dropped = phpo_architecture(architecture)
            rest["architecture"] = arch
            if dropped:
                aside["architecture"] = architecture
            gpu = phpo_gpu(architecture)
            resources = rest.get("resources")
            if gpu is not None and (resources is None or isinstance(resources, dict)):
                asked = dict(resources or {})
                asked.setdefault("gpus", 1)
                if gpu:
                    asked.setdefault("gpu_model", gpu)
                rest["resources"] = asked
        if not aside:
            return rest
        prior = rest.get("ignoredOptions")
        return {**rest, "ignoredOptions": {**prior, **aside} if isinstance(prior, dict) else aside}

    @field_validator("ignoredOptions")
    @classmethod
    def _only_phpo_keys(cls, value: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(value) - CLIENT_KEYS - IGNORED_KEYS - {"architecture"})
        if unknown:
            raise ValueError(
                f"holds only phpo options that have no effect here, not {', '.join(unknown)}"
            )
        check_json(value, "ignoredOptions")
        return value

    @field_validator(
        "evaluationInput",
        "evaluationTrainingData",
        "evaluationOutput",
        "evaluationIntermediate",
        "evaluationMeta",
        "evaluationMetrics",
    )
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        problem = None if value is None else name_issue(value)
        if problem:
            raise ValueError(f"{value!r} {problem}")
        return value

    @field_validator("initialPoints")
    @classmethod
    def _storable_points(
        cls, value: list[dict[str, bool | int | float | str | None]]
    ) -> list[dict[str, bool | int | float | str | None]]:
        check_json(value, "initialPoints")
        for index, point in enumerate(value):
            if any(isinstance(v, str) and "\0" in v for v in point.values()):
                raise ValueError(f"initialPoints.{index}: values must not contain a NUL byte")
        return value

    @field_validator("figureOfMerit")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, weight in (value or {}).items():
            problem = metric_name_issue(name)
            if problem:
                raise ValueError(problem)
            if not math.isfinite(weight):
                raise ValueError(f"{name}: the weight must be a finite number, got {weight}")
        return value

    @field_validator("objectives")
    @classmethod
    def _objective_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            problem = metric_name_issue(name)
            if problem:
                raise ValueError(problem)
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each metric may be one objective only")
        return value

    @field_validator("evaluationContainer")
    @classmethod
    def _image(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        for image in [value] if isinstance(value, str) else (value or {}).values():
            if len(image) > MAX_EXEC:
                raise ValueError(f"an image reference is longer than {MAX_EXEC} characters")
        return value

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        texts = value.values() if isinstance(value, dict) else [value]
        if any(isinstance(text, str) and "\0" in text for text in texts):
            raise ValueError("must not contain a NUL byte")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        if self.maxPointsPerEvaluationJob != 1:
            raise ValueError(
                "maxPointsPerEvaluationJob: only 1 point per evaluation job is supported so far"
            )
        if self.steeringContainer and not self.steeringExec:
            raise ValueError("steeringExec: required when steeringContainer is given")
        if self.warmStartFrom and self.steeringExec:
            raise ValueError(
                "warmStartFrom: only the built-in optimisers are warm-started, not a "
                "steering program (steeringExec)"
            )
        if self.minUnevaluatedPoints and self.minUnevaluatedPoints >= self.nPointsPerIteration:
            raise ValueError("minUnevaluatedPoints must be smaller than nPointsPerIteration")
        several = bool(self.steering.directions and len(self.steering.directions) > 1)
        if self.figureOfMerit is not None and self.objectives is not None:
            raise ValueError(
                "figureOfMerit: give either figureOfMerit (one loss) or objectives, not both"
            )
        if self.figureOfMerit is not None and several:
            raise ValueError(
                "figureOfMerit: makes one loss, but steering.directions has several objectives"
            )
        if self.objectives is not None and len(self.steering.directions or ()) != len(
            self.objectives
        ):
            raise ValueError(
                f"objectives: {len(self.objectives)} metrics, but steering.directions has "
                f"{len(self.steering.directions or ())} entries; give one direction per objective"
            )
        for rule in ("targetLoss", "stopAfterNoImprovement"):
            if several and getattr(self, rule) is not None:
                raise ValueError(f"{rule}: applies to single-objective tasks only")
        if self.pruner.active and self.steering.directions and len(self.steering.directions) > 1:
            raise ValueError("pruner: Optuna's pruners judge single-objective tasks only")
        for path in self.checkpoint_files:
            _check_relative("checkPointToSave", path)
        if self.checkPointToLoad is not None:
            _check_relative("checkPointToLoad", self.checkPointToLoad)
        if self.checkPointToLoad and not self.checkPointToSave:
            raise ValueError("checkPointToLoad: needs checkPointToSave (nothing is saved)")
        return self

    @property
    def sites(self) -> list[str]:
        """The sites the task is pinned to; empty when any site may run it."""
        return [s.strip() for s in (self.site or "").split(",") if s.strip()]

    @property
    def warnings(self) -> list[str]:
        """One line per phpo option given that has no effect here."""
        lines = []
        for key, value in self.ignoredOptions.items():
            if key == "architecture":
                lines.append(
                    f"--architecture: only the CPU architecture of {value!r} is used here "
                    f"({self.architecture or 'any'}, and its GPU as resources); vendor and "
                    "instruction-set requirements have no effect"
                )
            else:
                lines.append(server_ignores(key))
        return lines

    @property
    def multi_objective(self) -> list[Direction]:
        """The directions of a multi-objective task's objectives; empty for one loss."""
        directions = self.steering.directions or []
        return list(directions) if len(directions) > 1 else []

    @property
    def segmented(self) -> bool:
        """A task with ``segmentSpecFile``: one independently optimised model per segment."""
        return self.segmentSpecFile is not None

    def job_budget(self, segments: int = 1) -> int:
        """``maxEvaluationJobs``, by default twice the points the task may have
        (``maxPoints`` is per segment)."""
        return self.maxEvaluationJobs or 2 * self.maxPoints * max(segments, 1)

    @property
    def checkpoint_files(self) -> list[str]:
        """The entries of ``checkPointToSave`` (comma-separated), without blanks or a
        directory's trailing ``/``."""
        names = [p.strip() for p in (self.checkPointToSave or "").split(",")]
        return [n.rstrip("/") or n for n in names if n]


def _objective_directions(data: dict[str, object]) -> dict[str, object]:
    """``objectives`` without ``steering.directions``: every objective minimised, set
    before the steering block is checked, so that its algorithm is checked for
    several objectives."""
    objectives = data.get("objectives")
    steering = data.get("steering", {})
    if not isinstance(objectives, list) or not objectives or not isinstance(steering, dict):
        return data
    args = steering.get("args")
    if steering.get("directions") is not None or (isinstance(args, dict) and "directions" in args):
        return data
    return {**data, "steering": {**steering, "directions": ["minimize"] * len(objectives)}}


def phpo_architecture(value: str) -> tuple[str | None, bool]:
    """phpo's ``architecture`` as (CPU architecture or None for any, whether anything
    else was given). phpo writes ``#cpu_spec&gpu_spec`` with ``cpu_spec =
    arch-vendor-instruction_set`` (``*`` for any), e.g. ``#x86_64-*-avx2&nvidia``;
    a bare ``amd64`` is this project's own form. An unknown CPU architecture is left
    for the field's validator to refuse."""
    text = value.strip()
    if not text:
        return None, False
    if not text.startswith("#") and "&" not in text and "-" not in text:
        return _cpu(text), False
    cpu, _, _ = text.removeprefix("#").partition("&")
    parts = cpu.split("-")
    name = parts[0].strip()
    extra = any(p.strip() not in ("", "*") for p in parts[1:])
    if name in ("", "*"):
        return None, extra
    return _cpu(name), extra


def phpo_gpu(value: str) -> str | None:
    """The GPU model of phpo's ``gpu_spec`` (``vendor[-model]`` after ``&``): ``""``
    for a vendor alone (any GPU), None when no GPU is asked for. A job asking for a GPU
    this way needs one (``resources.gpus`` 1 unless given) of that model."""
    _, amp, gpu = value.strip().partition("&")
    if not amp or not gpu.strip() or gpu.strip() == "*":
        return None
    _, _, model = gpu.strip().partition("-")
    return "" if model.strip() in ("", "*") else model.strip()


def _cpu(name: str) -> str:
    """``x86_64`` -> ``amd64`` and the other usual names; an unknown one unchanged."""
    try:
        return normalise_arch(name)
    except ImageResolutionError:
        return name
