"""The task config's pruner block (shared/pruners.py): every pruner of the catalogue
builds Optuna's own pruner, and bad names or arguments are refused naming them."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from pydantic import ValidationError

from shared.domain.taskconfig import TaskConfig
from shared.pruners import PRUNER_ARGS, PrunerConfig, build_pruner

CASES: list[tuple[str, dict[str, Any], type[optuna.pruners.BasePruner]]] = [
    ("median", {"n_startup_trials": 3, "n_warmup_steps": 2}, optuna.pruners.MedianPruner),
    ("percentile", {"percentile": 25.0, "n_min_trials": 2}, optuna.pruners.PercentilePruner),
    (
        "successive_halving",
        {"min_resource": 2, "reduction_factor": 3},
        optuna.pruners.SuccessiveHalvingPruner,
    ),
    ("hyperband", {"min_resource": 1, "max_resource": 9}, optuna.pruners.HyperbandPruner),
    ("threshold", {"upper": 10.0, "n_warmup_steps": 1}, optuna.pruners.ThresholdPruner),
    ("wilcoxon", {"p_threshold": 0.05}, optuna.pruners.WilcoxonPruner),
    ("nop", {}, optuna.pruners.NopPruner),
]


def config(pruner: dict[str, Any], **extra: Any) -> TaskConfig:
    return TaskConfig.model_validate({"evaluationExec": "run", "pruner": pruner, **extra})


@pytest.mark.parametrize(("name", "args", "cls"), CASES, ids=[c[0] for c in CASES])
def test_each_pruner_builds_optunas_own(
    name: str, args: dict[str, Any], cls: type[optuna.pruners.BasePruner]
) -> None:
    block = config({"name": name, "args": args}).pruner
    assert block.name == cls.__name__
    assert isinstance(build_pruner(block.name, block.args), cls)
    # Optuna's class name, as the Hopaas API sends it, is the same pruner.
    assert config({"name": cls.__name__, "args": args}).pruner == block


def test_catalogue_is_optunas_seven() -> None:
    assert len(PRUNER_ARGS) == 7
    assert all(hasattr(optuna.pruners, name) for name in PRUNER_ARGS)


def test_default_is_nop() -> None:
    block = TaskConfig(evaluationExec="run").pruner
    assert block.name == "NopPruner"
    assert not block.active


def errors(pruner: dict[str, Any], **extra: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        config(pruner, **extra)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in caught.value.errors()]


def test_unknown_name_lists_the_known_ones() -> None:
    [(loc, msg)] = errors({"name": "early_stopper"})
    assert loc == "pruner.name"
    assert "early_stopper" in msg
    assert all(name in msg for name in PRUNER_ARGS)


@pytest.mark.parametrize(
    ("pruner", "argument"),
    [
        ({"name": "median", "args": {"n_startup": 3}}, "args.n_startup"),
        ({"name": "median", "args": {"n_warmup_steps": -1}}, "args.n_warmup_steps"),
        ({"name": "percentile", "args": {}}, "args.percentile"),
        ({"name": "percentile", "args": {"percentile": 150}}, "args.percentile"),
        ({"name": "hyperband", "args": {"reduction_factor": "three"}}, "args.reduction_factor"),
        ({"name": "successive_halving", "args": {"min_resource": "soon"}}, "args.min_resource"),
        ({"name": "wilcoxon", "args": {"p_threshold": 2}}, "args.p_threshold"),
        ({"name": "nop", "args": {"anything": 1}}, "args.anything"),
    ],
)
def test_bad_argument_is_named(pruner: dict[str, Any], argument: str) -> None:
    [(loc, msg)] = errors(pruner)
    assert loc == "pruner.args"
    assert argument in msg


def test_optunas_own_checks_apply() -> None:
    [(loc, msg)] = errors({"name": "threshold", "args": {"n_warmup_steps": 1}})
    assert loc == "pruner.args"
    assert "lower or upper" in msg


def test_pruning_needs_a_single_objective() -> None:
    [(_, msg)] = errors(
        {"name": "median"}, steering={"directions": ["minimize", "maximize"], "algorithm": "nsga2"}
    )
    assert "pruner" in msg
    nop = config({"name": "nop"}, steering={"directions": ["minimize", "minimize"]})
    assert nop.pruner.name == "NopPruner"


def test_intermediate_file_name() -> None:
    assert TaskConfig(evaluationExec="run").evaluationIntermediate == "intermediate.jsonl"
    named = TaskConfig(evaluationExec="run", evaluationIntermediate="curve.jsonl")
    assert named.evaluationIntermediate == "curve.jsonl"
    with pytest.raises(ValidationError, match="plain name"):
        TaskConfig(evaluationExec="run", evaluationIntermediate="../curve.jsonl")


def test_block_is_strict() -> None:
    with pytest.raises(ValidationError, match="extra"):
        PrunerConfig.model_validate({"name": "median", "argz": {}})
