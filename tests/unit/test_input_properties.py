"""Property tests of every input parser: whatever it is given, it answers a value that
can be stored and sent back, or its own error naming where the problem is; never
another exception (which the api would turn into a 500)."""

from __future__ import annotations

import json
import math
from typing import Any

import bson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.api.hopaas_properties import PropertyError, parse_study, parse_suggestion
from shared.domain.taskconfig import TaskConfig
from shared.jsonfile import JsonFileError, parse_json
from shared.searchspace import SearchSpaceError, parse_search_space, to_idds, to_phpo

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EDGE_INTS = st.sampled_from([0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**70])
EDGE_FLOATS = st.sampled_from([0.0, -0.0, 1e-300, 1e308, math.inf, -math.inf, math.nan, 0.1])
EDGE_TEXT = st.sampled_from(["", "a", "a\0b", "a/b", "..", ".", "\n", "x" * 300, "$x", "a.b"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    EDGE_INTS,
    st.floats(),
    EDGE_FLOATS,
    st.text(),
    EDGE_TEXT,
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)


def storable(value: Any) -> None:
    """As the database and a JSON reply need it."""
    bson.encode({"v": value})
    json.dumps(value, allow_nan=False)


# --- search spaces: both forms -------------------------------------------------------

METHODS = st.sampled_from(
    [
        "categorical",
        "uniform",
        "uniformint",
        "loguniform",
        "loguniformint",
        "normal",
        "lognormal",
        "quniform",
        "qloguniform",
        "gaussian",
        3,
        None,
    ]
)
DIMENSION_KEYS = st.sampled_from(
    ["low", "high", "q", "mu", "sigma", "base", "categories", "grid_search", "extra"]
)
NUMBERS = st.one_of(st.integers(-5, 5), EDGE_INTS, st.floats(-10, 10), EDGE_FLOATS, SCALARS)
PHPO_ENTRY = st.fixed_dictionaries(
    {
        "method": METHODS,
        "dimension": st.dictionaries(
            DIMENSION_KEYS, st.one_of(NUMBERS, st.lists(SCALARS, max_size=8)), max_size=5
        ),
    }
)
IDDS_ENTRY = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("Choice"),
            "params": st.fixed_dictionaries({"choices": st.lists(SCALARS, max_size=8)}),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["Scalar", "Log", "Grid"]),
            "bounds": st.lists(NUMBERS, max_size=3),
        },
        optional={"integer": SCALARS, "log": SCALARS, "params": JSONISH},
    ),
)
SPACES = st.one_of(
    st.dictionaries(
        st.one_of(st.text(max_size=10), EDGE_TEXT), st.one_of(PHPO_ENTRY, IDDS_ENTRY), max_size=4
    ),
    JSONISH,
)


@SETTINGS
@given(SPACES)
def test_a_search_space_parses_or_names_its_problems(raw: object) -> None:
    try:
        space = parse_search_space(raw)
    except SearchSpaceError as exc:
        assert exc.issues
        for issue in exc.issues:
            json.dumps(issue.loc)
        return
    storable(to_phpo(space))
    assert parse_search_space(to_phpo(space)) == space
    try:
        idds = to_idds(space)
    except SearchSpaceError:
        return
    storable(idds)


# --- the task config -------------------------------------------------------------------

OPTIONS = {
    "nParallelEvaluation": NUMBERS,
    "maxPoints": NUMBERS,
    "maxEvaluationJobs": NUMBERS,
    "nPointsPerIteration": NUMBERS,
    "minUnevaluatedPoints": NUMBERS,
    "checkPointInterval": NUMBERS,
    "failedPointLoss": NUMBERS,
    "maxAttempts": NUMBERS,
    "evaluationOutput": st.one_of(EDGE_TEXT, st.text(max_size=20)),
    "evaluationInput": EDGE_TEXT,
    "evaluationExec": st.one_of(EDGE_TEXT, st.text(max_size=20)),
    "steeringExec": EDGE_TEXT,
    "trainingDS": EDGE_TEXT,
    "checkPointToSave": EDGE_TEXT,
    "checkPointToLoad": EDGE_TEXT,
    "evaluationContainer": st.one_of(EDGE_TEXT, st.dictionaries(st.just("amd64"), EDGE_TEXT)),
    "steering": st.fixed_dictionaries(
        {},
        optional={
            "algorithm": st.sampled_from(["tpe", "random", "nope", ""]),
            "seed": NUMBERS,
            "budget": NUMBERS,
            "args": st.dictionaries(st.sampled_from(["n_startup_trials", "x"]), JSONISH),
        },
    ),
    "pruner": st.fixed_dictionaries(
        {"name": st.sampled_from(["median", "nop", "hyperband"])},
        optional={"args": st.dictionaries(st.sampled_from(["n_warmup_steps", "x"]), JSONISH)},
    ),
}


@SETTINGS
@given(st.fixed_dictionaries({}, optional=OPTIONS))
def test_a_task_config_validates_or_names_the_option(raw: dict[str, Any]) -> None:
    try:
        config = TaskConfig.model_validate(raw)
    except ValidationError as exc:
        assert exc.errors()
        return
    storable(config.model_dump(mode="json"))


# --- Hopaas suggestions and study bodies -------------------------------------------------

ARGUMENTS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "1",
                "-2.5",
                "1e-3",
                "true",
                "False",
                "NaN",
                "None",
                "null",
                "inf",
                "'a'",
                '"b,c"',
                "[1, 2]",
                "(1)",
                "[[1]]",
                "word",
                "",
                " ",
                "-" * 50,
                "(" * 50,
                "step=2",
                "log=true",
                "q=0.1",
                "low=0",
                "=",
                "'",
                "\\",
            ]
        ),
        st.integers().map(str),
        st.floats().map(repr),
        st.text(max_size=6),
    ),
    max_size=6,
)
KINDS = st.sampled_from(
    ["uniform", "float", "int", "loguniform", "discrete_uniform", "categorical", "normal", ""]
)


@SETTINGS
@given(KINDS, ARGUMENTS, st.sampled_from(["", ")", "))", " ", ",)"]))
def test_a_suggestion_parses_or_names_the_property(kind: str, args: list[str], end: str) -> None:
    text = f"optuna#{kind}({','.join(args)}{end}"
    try:
        dimension = parse_suggestion("p", text)
    except PropertyError as exc:
        assert exc.name == "p"
        return
    assert dimension is not None
    try:
        parse_search_space({"p": dimension})
    except SearchSpaceError:
        return
    storable(dimension)


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_after_the_prefix_is_read_or_refused(tail: str) -> None:
    try:
        parse_suggestion("p", "optuna#" + tail)
    except PropertyError as exc:
        assert exc.name == "p"


@SETTINGS
@given(
    st.dictionaries(st.one_of(st.text(max_size=6), EDGE_TEXT), JSONISH, max_size=5),
    st.one_of(
        JSONISH,
        st.fixed_dictionaries(
            {},
            optional={
                "title": SCALARS,
                "direction": SCALARS,
                "sampler": st.one_of(
                    SCALARS, st.fixed_dictionaries({"name": SCALARS, "args": JSONISH})
                ),
                "pruner": st.one_of(
                    SCALARS, st.fixed_dictionaries({"name": SCALARS, "args": JSONISH})
                ),
            },
        ),
    ),
)
def test_a_study_body_parses_or_names_the_property(
    properties: dict[str, Any], config: object
) -> None:
    try:
        spec = parse_study({**properties, "hopaas_config": config})
    except PropertyError as exc:
        assert isinstance(exc.name, str)
        return
    storable(spec.properties)
    storable(spec.space)


# --- JSON files ---------------------------------------------------------------------------


@SETTINGS
@given(st.one_of(st.text(max_size=80), JSONISH.map(lambda v: json.dumps(v)[:-1])))
def test_a_json_file_reads_or_says_where(text: str) -> None:
    try:
        parse_json(text)
    except JsonFileError as exc:
        assert exc.message


@pytest.mark.parametrize(
    ("text", "line"),
    [('{"a": 1,\n}', 1), ("[1,\n 2,\n\n]", 2), ('{"a": {"b": 1,}}', 1)],
)
def test_a_trailing_comma_is_named_with_its_line(text: str, line: int) -> None:
    with pytest.raises(JsonFileError) as info:
        parse_json(text)
    assert f"a trailing comma after the last entry on line {line}?" in info.value.message


def test_deep_nesting_is_refused_before_the_decoder_recurses() -> None:
    with pytest.raises(JsonFileError, match="nested deeper"):
        parse_json("[" * 100_000)
