"""``%FLAGS`` in evaluationExec: the point as shell-quoted ``--name value`` flags.

Each expanded command is run through a real ``/bin/sh``, which prints its argv one word
per line (NUL-separated, so a value holding a newline stays one word), so the tests see
exactly the words the payload would get.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge.node.agent import NodeAgent
from edge.node.placeholders import flag_words, substitute_exec
from shared.edge_api import PointSpec
from shared.searchspace import SearchSpaceError, parse_search_space
from tests.unit.edge.conftest import StageFactory

ECHO_ARGS = "printf '%s\\0'"


def _argv(command: str, cwd: Path) -> list[str]:
    done = subprocess.run(
        ["/bin/sh", "-c", command], cwd=cwd, capture_output=True, check=True, timeout=30
    )
    return done.stdout.decode().split("\0")[:-1]


def _expand(params: Mapping[str, object]) -> str:
    return substitute_exec(f"{ECHO_ARGS} %FLAGS", segment="main", training_files=[], params=params)


def test_flags_are_name_value_pairs_in_point_order(tmp_path: Path) -> None:
    params = {"learning_rate": 0.001, "optimizer": "adam", "layers": 3}
    assert _argv(_expand(params), tmp_path) == [
        "--learning_rate",
        "0.001",
        "--optimizer",
        "adam",
        "--layers",
        "3",
    ]


def test_booleans_and_null_are_spelled_as_json(tmp_path: Path) -> None:
    params = {"bn": True, "dropout": False, "act": None, "big": 1e-300}
    assert _argv(_expand(params), tmp_path) == [
        "--bn",
        "true",
        "--dropout",
        "false",
        "--act",
        "null",
        "--big",
        "1e-300",
    ]


HOSTILE = [
    "it's",
    'say "hi"',
    "a; touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    "line1\nline2",
    "--other value",
    "%IN_DATA",
    "",
    "*",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_one_word_and_run_nothing(tmp_path: Path, value: str) -> None:
    params = {"opt": value, "x": 1}
    assert _argv(_expand(params), tmp_path) == ["--opt", value, "--x", "1"]
    assert not (tmp_path / "pwned").exists()


def test_hostile_names_stay_one_word(tmp_path: Path) -> None:
    params = {"a b;$(touch pwned)": 1}
    assert _argv(_expand(params), tmp_path) == ["--a b;$(touch pwned)", "1"]
    assert not (tmp_path / "pwned").exists()


def test_an_empty_point_expands_to_nothing(tmp_path: Path) -> None:
    command = substitute_exec(f"{ECHO_ARGS} x %FLAGS", segment="", training_files=[], params={})
    assert _argv(command, tmp_path) == ["x"]


def test_nul_in_a_category_is_refused_by_validation() -> None:
    with pytest.raises(SearchSpaceError) as caught:
        parse_search_space(
            {"opt": {"method": "categorical", "dimension": {"categories": ["a", "b\0c"]}}}
        )
    assert caught.value.loc == ("opt", "dimension", "categories", 1)
    assert "NUL" in caught.value.message


def test_only_the_active_parameters_of_a_conditional_point_become_flags(tmp_path: Path) -> None:
    space = parse_search_space(
        {
            "model": {"method": "categorical", "dimension": {"categories": ["svm", "mlp"]}},
            "C": {
                "method": "loguniform",
                "dimension": {"low": 0.01, "high": 10},
                "when": {"model": ["svm"]},
            },
            "width": {
                "method": "uniformint",
                "dimension": {"low": 8, "high": 64},
                "when": {"model": ["mlp"]},
            },
        }
    )
    from shared.searchspace import drop_inactive

    point = drop_inactive(space, {"model": "mlp", "C": 1.0, "width": 16})
    assert flag_words(point) == ["--model", "mlp", "--width", "16"]


def test_the_node_agent_passes_the_points_flags_to_the_payload(stage: StageFactory) -> None:
    point = PointSpec(point_id="p0", index=0, params={"lr": 0.5, "opt": "a b; $(touch pwned)"})
    paths = stage(f"{ECHO_ARGS} %FLAGS > argv.bin", points=[point])
    assert NodeAgent(paths.dir).run() == 0
    words = (paths.work / "argv.bin").read_bytes().decode().split("\0")[:-1]
    assert words == ["--lr", "0.5", "--opt", "a b; $(touch pwned)"]
    assert not (paths.work / "pwned").exists()
