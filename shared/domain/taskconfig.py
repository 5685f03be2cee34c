"""The phpo-compatible task configuration (ARCHITECTURE.md §7).

Field names are phpo's camelCase option names, so a user's ``--loadJson`` file
validates unchanged. Options that later releases will act on (checkpoints, segments,
steering containers) are parsed here so that a config is checked in one place; those
not yet supported are refused with a message naming the option instead of being
silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Arch = Literal["amd64", "ppc64le", "arm64"]
ALGORITHMS = ("tpe", "random")


class SteeringConfig(BaseModel):
    """Which optimiser generates the points of every segment of the task."""

    model_config = ConfigDict(extra="forbid")

    library: Literal["optuna"] = "optuna"
    algorithm: str = "tpe"
    args: dict[str, object] = Field(default_factory=dict)
    seed: int | None = None

    @field_validator("algorithm")
    @classmethod
    def _known(cls, value: str) -> str:
        name = value.lower()
        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {value!r}; available: {', '.join(ALGORITHMS)}")
        return name


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    nParallelEvaluation: int = Field(default=1, ge=1, le=10_000)
    maxPoints: int = Field(default=10, ge=1, le=1_000_000)
    maxEvaluationJobs: int | None = Field(default=None, ge=1)
    maxPointsPerEvaluationJob: int = Field(default=1, ge=1)
    nPointsPerIteration: int = Field(default=2, ge=1, le=100_000)
    minUnevaluatedPoints: int = Field(default=0, ge=0)
    steeringContainer: str | None = None
    steeringExec: str | None = None
    searchSpaceFile: str | None = None
    evaluationContainer: str | dict[Arch, str] | None = None
    evaluationExec: str = Field(min_length=1)
    evaluationInput: str = "input.json"
    evaluationTrainingData: str = "input_ds.json"
    evaluationOutput: str = "output.json"
    evaluationMeta: str | None = None
    evaluationMetrics: str | None = None
    trainingDS: str | None = None
    checkPointToSave: str | None = None
    checkPointToLoad: str | None = None
    checkPointInterval: int = Field(default=5, ge=1)
    segmentSpecFile: str | None = None
    site: str | None = None
    architecture: Arch | None = None
    steering: SteeringConfig = Field(default_factory=SteeringConfig)
    failedPointLoss: float = 1e10
    maxAttempts: int = Field(default=3, ge=1, le=10)

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        if self.maxPointsPerEvaluationJob != 1:
            raise ValueError(
                "maxPointsPerEvaluationJob: only 1 point per evaluation job is supported so far"
            )
        if self.steeringContainer or self.steeringExec:
            raise ValueError(
                "steeringContainer/steeringExec: steering containers are not supported yet; "
                "use the built-in 'steering' block"
            )
        if self.segmentSpecFile:
            raise ValueError("segmentSpecFile: segmented tasks are not supported yet")
        if self.minUnevaluatedPoints and self.minUnevaluatedPoints >= self.nPointsPerIteration:
            raise ValueError("minUnevaluatedPoints must be smaller than nPointsPerIteration")
        for name in (self.evaluationInput, self.evaluationTrainingData, self.evaluationOutput):
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"file name {name!r} must be a plain name in the work directory")
        return self

    @property
    def max_jobs(self) -> int:
        return self.maxEvaluationJobs or 2 * self.maxPoints
