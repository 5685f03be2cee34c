"""Search spaces: both input forms, every error located, round trips, and that what the
backends draw is always a valid point."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import optuna
import pytest

from shared.searchspace import (
    PHPO_METHODS,
    Dimension,
    SearchSpace,
    SearchSpaceError,
    canonical_key,
    parse_search_space,
    parse_segmented,
    snap_point,
    to_idds,
    to_nevergrad,
    to_optuna,
    to_phpo,
    validate_point,
)

# One dimension of every method, in phpo form, with a value that is valid for it.
EVERY_METHOD: dict[str, dict[str, Any]] = {
    "cat": {
        "method": "categorical",
        "dimension": {"categories": [True, None, 3, 2.5, "relu"], "grid_search": 1},
    },
    "uni": {"method": "uniform", "dimension": {"low": -1.5, "high": 2}},
    "uint": {"method": "uniformint", "dimension": {"low": 10, "high": 30}},
    "loguni": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-2}},
    "loguint": {"method": "loguniformint", "dimension": {"low": 1, "high": 1024, "base": 2}},
    "norm": {"method": "normal", "dimension": {"mu": 0.5, "sigma": 0.1}},
    "lognorm": {"method": "lognormal", "dimension": {"mu": 0, "sigma": 1, "base": 10}},
    "qu": {"method": "quniform", "dimension": {"low": 0, "high": 1, "q": 0.3}},
    "qlogu": {"method": "qloguniform", "dimension": {"low": 1, "high": 1000, "q": 5}},
}

IDDS_SPACE: dict[str, dict[str, Any]] = {
    "A": {"type": "Choice", "params": {"choices": [1, 4]}},
    "B": {"type": "Scalar", "bounds": [0, 5]},
    "C": {"type": "Scalar", "bounds": [1, 8], "integer": True},
    "D": {"type": "Log", "bounds": [0.001, 1.0]},
    "E": {"type": "Log", "bounds": [2, 64], "integer": True},
}

PHPO_EQUIVALENT: dict[str, dict[str, Any]] = {
    "A": {"method": "categorical", "dimension": {"categories": [1, 4]}},
    "B": {"method": "uniform", "dimension": {"low": 0, "high": 5}},
    "C": {"method": "uniformint", "dimension": {"low": 1, "high": 8}},
    "D": {"method": "loguniform", "dimension": {"low": 0.001, "high": 1.0}},
    "E": {"method": "loguniformint", "dimension": {"low": 2, "high": 64}},
}


def issues_of(obj: object) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(obj)
    return [(issue.loc, issue.msg) for issue in info.value.issues]


def phpo(name: str, method: str, **dimension: Any) -> dict[str, Any]:
    return {name: {"method": method, "dimension": dimension}}


# --- parsing -----------------------------------------------------------------------


def test_architecture_example_parses() -> None:
    space = parse_search_space(
        {
            "auto_lr": {
                "method": "categorical",
                "dimension": {"categories": [True, False], "grid_search": 0},
            },
            "batch_size": {"method": "uniformint", "dimension": {"low": 10, "high": 30}},
        }
    )
    assert space.names == ("auto_lr", "batch_size")
    assert space.dimension("auto_lr").choices == (True, False)
    assert space.dimension("auto_lr").grid_search is False
    batch = space.dimension("batch_size")
    assert (batch.kind, batch.low, batch.high, batch.log) == ("int", 10, 30, False)


def test_both_forms_give_the_same_space() -> None:
    assert parse_search_space(IDDS_SPACE) == parse_search_space(PHPO_EQUIVALENT)


def test_idds_alternative_spellings_give_the_same_space() -> None:
    spelled = {
        "A": {"type": "Choice", "params": {"choices": [1, 4]}},
        "B": {"type": "Scalar", "params": {"lower": 0, "upper": 5}},
        "C": {"type": "Scalar", "params": {"lower": 1, "upper": 8}, "integer": True},
        "D": {"type": "Scalar", "bounds": [0.001, 1.0], "log": True},
        "E": {"type": "Scalar", "bounds": [2, 64], "integer": True, "log": True},
    }
    assert parse_search_space(spelled) == parse_search_space(IDDS_SPACE)


def test_forms_may_be_mixed_per_entry() -> None:
    mixed = {"A": IDDS_SPACE["A"], "B": PHPO_EQUIVALENT["B"]}
    assert parse_search_space(mixed).names == ("A", "B")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cat", {"kind": "categorical", "choices": (True, None, 3, 2.5, "relu")}),
        ("uni", {"kind": "float", "low": -1.5, "high": 2, "log": False}),
        ("uint", {"kind": "int", "low": 10, "high": 30, "log": False}),
        ("loguni", {"kind": "float", "low": 1e-5, "high": 1e-2, "log": True}),
        ("loguint", {"kind": "int", "low": 1, "high": 1024, "log": True, "base": 2}),
        ("norm", {"kind": "float", "mu": 0.5, "sigma": 0.1, "log": False, "low": None}),
        ("lognorm", {"kind": "float", "mu": 0, "sigma": 1, "log": True, "base": 10}),
        ("qu", {"kind": "float", "low": 0, "high": 1, "q": 0.3, "log": False}),
        ("qlogu", {"kind": "float", "low": 1, "high": 1000, "q": 5, "log": True}),
    ],
)
def test_every_method(name: str, expected: dict[str, Any]) -> None:
    dim = parse_search_space({name: EVERY_METHOD[name]}).dimension(name)
    assert dim.method == EVERY_METHOD[name]["method"]
    for field, value in expected.items():
        assert getattr(dim, field) == value, field


def test_every_method_is_covered() -> None:
    assert {entry["method"] for entry in EVERY_METHOD.values()} == set(PHPO_METHODS)


def test_order_is_kept() -> None:
    names = ["z", "a", "m"]
    space = parse_search_space(dict.fromkeys(names, PHPO_EQUIVALENT["B"]))
    assert list(space.names) == names


def test_category_values_keep_their_json_type() -> None:
    categories = [True, False, None, 0.5, 2, 3.0, "2", ""]
    space = parse_search_space(phpo("c", "categorical", categories=categories))
    choices = space.dimension("c").choices
    assert json.dumps(list(choices)) == json.dumps(categories)
    assert [type(c) for c in choices] == [type(c) for c in categories]


def test_integer_bounds_given_as_whole_floats_become_ints() -> None:
    dim = parse_search_space(phpo("n", "uniformint", low=10.0, high=30.0)).dimension("n")
    assert (dim.low, dim.high) == (10, 30)
    assert isinstance(dim.low, int) and isinstance(dim.high, int)


def test_float_bounds_keep_their_type() -> None:
    dim = parse_search_space(phpo("x", "uniform", low=0, high=1.0)).dimension("x")
    assert isinstance(dim.low, int) and isinstance(dim.high, float)


def test_space_is_frozen() -> None:
    space = parse_search_space(PHPO_EQUIVALENT)
    with pytest.raises(ValueError, match="frozen"):
        space.dimensions = ()  # type: ignore[misc]


def test_space_survives_a_json_round_trip_of_the_model() -> None:
    """The store keeps the parsed space as JSON; category types must come back."""
    space = parse_search_space(EVERY_METHOD)
    again = SearchSpace.model_validate_json(space.model_dump_json())
    assert again == space
    assert [type(c) for c in again.dimension("cat").choices] == [bool, type(None), int, float, str]


def test_duplicate_names_are_refused_by_the_model() -> None:
    dim = Dimension(name="x", method="uniform", kind="float", low=0, high=1)
    with pytest.raises(ValueError, match="unique"):
        SearchSpace(dimensions=(dim, dim))


# --- errors ------------------------------------------------------------------------

UNIFORM = "uniform"


@pytest.mark.parametrize(
    ("obj", "loc", "fragment"),
    [
        # the space as a whole
        ({}, (), "empty"),
        ([], (), "JSON object"),
        ("x", (), "JSON object"),
        ({"": PHPO_EQUIVALENT["B"]}, ("",), "non-empty strings"),
        ({3: PHPO_EQUIVALENT["B"]}, (3,), "non-empty strings"),
        ({"x": [1, 2]}, ("x",), "must be an object"),
        ({"x": {"low": 1}}, ("x",), "'method' and 'dimension'"),
        ({"x": {"method": "uniform", "type": "Scalar"}}, ("x",), "both"),
        # phpo entry structure
        ({"x": {"method": "gaussian", "dimension": {}}}, ("x", "method"), "lognormal, quniform"),
        ({"x": {"method": 3, "dimension": {}}}, ("x", "method"), "unknown method"),
        ({"x": {"method": "uniform"}}, ("x", "dimension"), "missing"),
        ({"x": {"dimension": {"low": 0, "high": 1}}}, ("x", "method"), "missing"),
        ({"x": {"method": "uniform", "dimension": [0, 1]}}, ("x", "dimension"), "object"),
        (
            {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}, "prior": 1}},
            ("x", "prior"),
            "unexpected key",
        ),
        (phpo("x", UNIFORM, low=0), ("x", "dimension", "high"), "missing (uniform needs"),
        (phpo("x", UNIFORM, low=0, high=1, q=1), ("x", "dimension", "q"), "expected low, high"),
        (phpo("x", "normal", mu=0), ("x", "dimension", "sigma"), "missing"),
        (phpo("x", "quniform", low=0, high=1), ("x", "dimension", "q"), "missing"),
        (phpo("x", "categorical"), ("x", "dimension", "categories"), "missing"),
        # numbers
        (phpo("x", UNIFORM, low="0", high=1), ("x", "dimension", "low"), "must be a number"),
        (phpo("x", UNIFORM, low=0, high=None), ("x", "dimension", "high"), "must be a number"),
        (phpo("x", UNIFORM, low=False, high=1), ("x", "dimension", "low"), "must be a number"),
        (phpo("x", UNIFORM, low=0, high=math.inf), ("x", "dimension", "high"), "finite"),
        (phpo("x", UNIFORM, low=math.nan, high=1), ("x", "dimension", "low"), "finite"),
        (phpo("x", UNIFORM, low=1, high=1), ("x", "dimension", "high"), "greater than low"),
        (phpo("x", UNIFORM, low=2, high=1), ("x", "dimension", "high"), "greater than low"),
        (phpo("x", "uniformint", low=5, high=5), ("x", "dimension", "high"), "greater"),
        (phpo("x", "loguniform", low=0, high=1), ("x", "dimension", "low"), "> 0 for the log"),
        (phpo("x", "loguniform", low=-1, high=1), ("x", "dimension", "low"), "> 0"),
        (phpo("x", "loguniformint", low=0, high=8), ("x", "dimension", "low"), "> 0"),
        (phpo("x", "qloguniform", low=0, high=8, q=1), ("x", "dimension", "low"), "> 0"),
        (phpo("x", "quniform", low=0, high=1, q=0), ("x", "dimension", "q"), "must be > 0"),
        (phpo("x", "quniform", low=0, high=1, q=-0.1), ("x", "dimension", "q"), "> 0"),
        (phpo("x", "quniform", low=0, high=1, q=2), ("x", "dimension", "q"), "larger than"),
        (phpo("x", "normal", mu=0, sigma=0), ("x", "dimension", "sigma"), "must be > 0"),
        (phpo("x", "lognormal", mu=0, sigma=-1), ("x", "dimension", "sigma"), "> 0"),
        (phpo("x", "normal", mu="a", sigma=1), ("x", "dimension", "mu"), "must be a number"),
        (phpo("x", "lognormal", mu=800, sigma=1), ("x", "dimension", "mu"), "floating-point"),
        (phpo("x", "lognormal", mu=-800, sigma=1), ("x", "dimension", "mu"), "floating-point"),
        (phpo("x", "normal", mu=1e308, sigma=1e308), ("x", "dimension", "mu"), "floating-point"),
        (phpo("x", "loguniform", low=1, high=2, base=1), ("x", "dimension", "base"), "> 1"),
        (phpo("x", "uniformint", low=0.5, high=3), ("x", "dimension", "low"), "whole number"),
        (phpo("x", "loguniformint", low=1, high=9.5), ("x", "dimension", "high"), "whole"),
        # categories
        (phpo("x", "categorical", categories=[]), ("x", "dimension", "categories"), "empty"),
        (phpo("x", "categorical", categories="ab"), ("x", "dimension", "categories"), "list"),
        (
            phpo("x", "categorical", categories=[1, True]),
            ("x", "dimension", "categories", 1),
            "Optuna cannot tell them apart",
        ),
        (
            phpo("x", "categorical", categories=[False, 0.0]),
            ("x", "dimension", "categories", 1),
            "Optuna cannot tell them apart",
        ),
        (
            phpo("x", "categorical", categories=[1, [2, 3]]),
            ("x", "dimension", "categories", 1),
            "string, number, boolean or null",
        ),
        (
            phpo("x", "categorical", categories=[1, math.nan]),
            ("x", "dimension", "categories", 1),
            "finite",
        ),
        (
            phpo("x", "categorical", categories=[1, 2], grid_search=2),
            ("x", "dimension", "grid_search"),
            "0, 1, true or false",
        ),
        # iDDS entries
        ({"A": {"type": "Grid"}}, ("A", "type"), "Choice, Log, Scalar"),
        ({"A": {"type": "Choice"}}, ("A", "params", "choices"), "missing"),
        ({"A": {"type": "Choice", "params": [1]}}, ("A", "params"), "object"),
        ({"A": {"type": "Choice", "params": {"choices": []}}}, ("A", "params", "choices"), "empty"),
        (
            {"A": {"type": "Choice", "params": {"choices": [1, 2], "repetitions": 2}}},
            ("A", "params", "repetitions"),
            "unexpected key",
        ),
        ({"B": {"type": "Scalar"}}, ("B", "bounds"), "missing"),
        ({"B": {"type": "Scalar", "bounds": [0]}}, ("B", "bounds"), "[low, high]"),
        ({"B": {"type": "Scalar", "bounds": [0, "5"]}}, ("B", "bounds", 1), "must be a number"),
        ({"B": {"type": "Scalar", "bounds": [5, 0]}}, ("B", "bounds", 1), "greater than low"),
        ({"B": {"type": "Log", "bounds": [0, 5]}}, ("B", "bounds", 0), "> 0 for the log"),
        (
            {"B": {"type": "Scalar", "bounds": [0, 1], "params": {"lower": 0, "upper": 1}}},
            ("B", "params"),
            "given twice",
        ),
        ({"B": {"type": "Scalar", "params": {"lower": 0}}}, ("B", "params", "upper"), "missing"),
        (
            {"B": {"type": "Scalar", "params": {"lower": 0, "upper": 5, "init": 1}}},
            ("B", "params", "init"),
            "unexpected key",
        ),
        (
            {"B": {"type": "Scalar", "bounds": [0, 1], "params": {"init": 1}}},
            ("B", "params", "init"),
            "unexpected key",
        ),
        (
            {"B": {"type": "Scalar", "params": {"lower": 0, "upper": "x"}}},
            ("B", "params", "upper"),
            "must be a number",
        ),
        ({"B": {"type": "Scalar", "bounds": [0, 1], "integer": 1}}, ("B", "integer"), "true or"),
        (
            {"B": {"type": "Scalar", "bounds": [0.5, 3], "integer": True}},
            ("B", "bounds", 0),
            "whole",
        ),
        ({"B": {"type": "Log", "bounds": [1, 3], "log": True}}, ("B", "log"), "unexpected key"),
        ({"B": {"type": "Scalar", "bounds": [0, 1], "sigma": 1}}, ("B", "sigma"), "unexpected"),
    ],
)
def test_errors_are_located(obj: object, loc: tuple[str | int, ...], fragment: str) -> None:
    issues = issues_of(obj)
    assert [i_loc for i_loc, _ in issues] == [loc], issues
    assert fragment in issues[0][1]


def test_all_errors_are_collected() -> None:
    space = {
        "ok": PHPO_EQUIVALENT["B"],
        "lr": {"method": "loguniform", "dimension": {"low": 0, "high": "1"}},
        "act": {"method": "choice", "dimension": {"categories": ["a"]}},
        "A": {"type": "Choice", "params": {"choices": []}},
        "n": {"method": "uniformint", "dimension": {"low": 1, "high": 4, "step": 1}},
    }
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(space)
    error = info.value
    assert [issue.loc for issue in error.issues] == [
        ("lr", "dimension", "high"),
        ("lr", "dimension", "low"),
        ("act", "method"),
        ("A", "params", "choices"),
        ("n", "dimension", "step"),
    ]
    assert error.loc == ("lr", "dimension", "high")
    assert error.message == 'must be a number, got "1"'
    assert isinstance(error, ValueError)
    assert "5 problems" in str(error) and "act.method: unknown method" in str(error)
    assert error.errors()[2] == {
        "loc": ["act", "method"],
        "msg": error.issues[2].msg,
        "type": "search_space",
    }
    assert "categorical, uniform, uniformint" in error.issues[2].msg


# --- segmented tasks ---------------------------------------------------------------


def test_one_space_is_shared_by_every_segment() -> None:
    spaces = parse_segmented(PHPO_EQUIVALENT, 3)
    assert len(spaces) == 3
    assert all(space == parse_search_space(PHPO_EQUIVALENT) for space in spaces)


def test_a_list_gives_one_space_per_segment() -> None:
    spaces = parse_segmented([PHPO_EQUIVALENT, IDDS_SPACE, {"x": EVERY_METHOD["norm"]}], 3)
    assert spaces[0] == spaces[1]
    assert spaces[2].names == ("x",)


def test_a_list_must_match_the_segment_count() -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_segmented([PHPO_EQUIVALENT, PHPO_EQUIVALENT], 3)
    assert [issue.loc for issue in info.value.issues] == [()]
    assert "2 search spaces for 3 segments" in info.value.message


def test_segment_errors_are_located_under_their_index() -> None:
    bad = phpo("x", "uniform", low=1, high=0)
    with pytest.raises(SearchSpaceError) as info:
        parse_segmented([PHPO_EQUIVALENT, bad, {}], 2)
    assert [issue.loc for issue in info.value.issues] == [
        (),
        (1, "x", "dimension", "high"),
        (2,),
    ]


def test_a_shared_space_reports_errors_without_index() -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_segmented(phpo("x", "uniform", low=1, high=0), 2)
    assert info.value.loc == ("x", "dimension", "high")


def test_segment_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        parse_segmented(PHPO_EQUIVALENT, 0)


# --- round trips -------------------------------------------------------------------


def test_phpo_round_trip_keeps_every_method_exactly() -> None:
    back = to_phpo(parse_search_space(EVERY_METHOD))
    assert json.dumps(back, sort_keys=True) == json.dumps(EVERY_METHOD, sort_keys=True)
    assert list(back) == list(EVERY_METHOD)


def test_idds_round_trip_is_exact() -> None:
    back = to_idds(parse_search_space(IDDS_SPACE))
    assert json.dumps(back, sort_keys=True) == json.dumps(IDDS_SPACE, sort_keys=True)


def test_cross_form_conversion() -> None:
    assert to_idds(parse_search_space(PHPO_EQUIVALENT)) == IDDS_SPACE
    assert to_phpo(parse_search_space(IDDS_SPACE)) == PHPO_EQUIVALENT


def test_idds_spellings_come_back_canonical() -> None:
    space = {
        "B": {"type": "Scalar", "params": {"lower": 0, "upper": 5}},
        "D": {"type": "Scalar", "bounds": [0.001, 1.0], "log": True},
    }
    assert to_idds(parse_search_space(space)) == {"B": IDDS_SPACE["B"], "D": IDDS_SPACE["D"]}


def test_grid_search_false_comes_back_as_zero() -> None:
    space = phpo("c", "categorical", categories=["a", "b"], grid_search=False)
    assert to_phpo(parse_search_space(space))["c"]["dimension"]["grid_search"] == 0


def test_methods_without_idds_form_are_named() -> None:
    space = parse_search_space(EVERY_METHOD)
    with pytest.raises(SearchSpaceError) as info:
        to_idds(space)
    assert [issue.loc for issue in info.value.issues] == [
        ("norm", "method"),
        ("lognorm", "method"),
        ("qu", "method"),
        ("qlogu", "method"),
    ]


# --- backends ----------------------------------------------------------------------


@pytest.fixture
def quiet_optuna() -> Iterator[None]:
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    yield
    optuna.logging.set_verbosity(before)


@pytest.mark.parametrize("name", list(EVERY_METHOD))
@pytest.mark.usefixtures("quiet_optuna")
def test_optuna_draws_valid_points(name: str) -> None:
    space = parse_search_space({name: EVERY_METHOD[name]})
    distributions = to_optuna(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    for _ in range(40):
        trial = study.ask(fixed_distributions=distributions)
        point = snap_point(space, trial.params)
        assert validate_point(space, point) == [], point
        assert_exact_values(space, point)
        study.tell(trial, 0.0)


def assert_exact_values(space: SearchSpace, point: dict[str, object]) -> None:
    """Categories come back as the very JSON values given, ints as ints, and quantised
    values on the decimal grid ``low + k*q``."""
    for dim in space.dimensions:
        value = point[dim.name]
        if dim.kind == "categorical":
            assert json.dumps(value) in {json.dumps(c) for c in dim.choices}
        elif dim.kind == "int":
            assert type(value) is int
        elif dim.q is not None:
            assert isinstance(value, float)
            steps = (Decimal(str(value)) - Decimal(str(dim.low))) / Decimal(str(dim.q))
            assert steps == steps.to_integral_value(), value


def test_optuna_distributions() -> None:
    dists = to_optuna(parse_search_space(EVERY_METHOD))
    assert dists["cat"] == optuna.distributions.CategoricalDistribution(
        [True, None, 3, 2.5, "relu"]
    )
    assert dists["uint"] == optuna.distributions.IntDistribution(10, 30)
    assert dists["loguint"] == optuna.distributions.IntDistribution(1, 1024, log=True)
    assert dists["loguni"] == optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)
    # high lowered to the last point of the grid, as Optuna wants, without its warning
    assert dists["qu"] == optuna.distributions.FloatDistribution(0, 0.9, step=0.3)
    assert dists["qlogu"] == optuna.distributions.FloatDistribution(1, 1000, log=True)
    norm = dists["norm"]
    assert isinstance(norm, optuna.distributions.FloatDistribution)
    assert norm.low == pytest.approx(0.1) and norm.high == pytest.approx(0.9)
    assert not norm.log
    lognorm = dists["lognorm"]
    assert isinstance(lognorm, optuna.distributions.FloatDistribution)
    assert lognorm.log
    assert lognorm.low == pytest.approx(1e-4) and lognorm.high == pytest.approx(1e4)


def test_nevergrad_draws_valid_points() -> None:
    space = parse_search_space(EVERY_METHOD)
    param = to_nevergrad(space)
    param.random_state.seed(3)
    seen_categories = set()
    for _ in range(60):
        value = param.sample().value
        assert isinstance(value["uint"], int) and isinstance(value["loguint"], int)
        point = snap_point(space, value)
        assert validate_point(space, point) == [], point
        assert_exact_values(space, point)
        seen_categories.add(json.dumps(point["cat"]))
    assert len(seen_categories) == 5


def test_nevergrad_optimizer_asks_valid_points() -> None:
    import nevergrad as ng

    space = parse_search_space({**IDDS_SPACE, "qu": EVERY_METHOD["qu"]})
    optimizer = ng.optimizers.OnePlusOne(parametrization=to_nevergrad(space), budget=30)
    for _ in range(30):
        candidate = optimizer.ask()
        point = snap_point(space, candidate.value)
        assert validate_point(space, point) == [], point
        loss = point["B"]
        assert isinstance(loss, float)
        optimizer.tell(candidate, loss)


def test_nevergrad_keeps_the_normal_priors() -> None:
    space = parse_search_space({"n": EVERY_METHOD["norm"], "l": EVERY_METHOD["lognorm"]})
    param = to_nevergrad(space)
    param.random_state.seed(0)
    values = [param.sample().value for _ in range(400)]
    normal = np.array([v["n"] for v in values])
    lognormal = np.log10([v["l"] for v in values])
    assert normal.mean() == pytest.approx(0.5, abs=0.03)
    assert normal.std() == pytest.approx(0.1, abs=0.02)
    assert lognormal.mean() == pytest.approx(0.0, abs=0.2)
    assert lognormal.std() == pytest.approx(1.0, abs=0.15)


def test_snap_point_puts_values_on_the_grid() -> None:
    space = parse_search_space(
        {
            "qu": EVERY_METHOD["qu"],
            "ql": EVERY_METHOD["qlogu"],
            "q01": {"method": "quniform", "dimension": {"low": 0, "high": 1, "q": 0.1}},
            "n": EVERY_METHOD["uint"],
        }
    )
    point = {"qu": 0.95, "ql": 7.4, "q01": 0.30000000000000004, "n": 12.0, "extra": "x"}
    assert snap_point(space, point) == {"qu": 0.9, "ql": 6.0, "q01": 0.3, "n": 12, "extra": "x"}
    assert snap_point(space, {"qu": -0.2, "ql": 1000.0})["ql"] == 996.0
    assert snap_point(space, {"qu": -0.2})["qu"] == 0.0
    assert snap_point(space, {"qu": "a"}) == {"qu": "a"}


# --- points ------------------------------------------------------------------------


def test_validate_point_accepts_a_valid_point() -> None:
    space = parse_search_space(EVERY_METHOD)
    point = {
        "cat": None,
        "uni": 2,
        "uint": 10,
        "loguni": 1e-5,
        "loguint": 1024,
        "norm": -40.0,
        "lognorm": 1e-9,
        "qu": 0.9,
        "qlogu": 995,
    }
    assert validate_point(space, point) == []


def test_validate_point_names_every_problem() -> None:
    space = parse_search_space(EVERY_METHOD)
    point = {
        "cat": "sigmoid",
        "uni": 2.5,
        "uint": 11.0,
        "loguni": 0.0,
        "loguint": True,
        "norm": math.nan,
        "lognorm": -1.0,
        "qu": "0.3",
        "unknown": 1,
    }
    errors = validate_point(space, point)
    assert errors == [
        'cat: "sigmoid" is not one of [true, null, 3, 2.5, "relu"]',
        "uni: 2.5 is outside [-1.5, 2]",
        "uint: expected an integer, got 11.0",
        "loguni: 0.0 is outside [1e-05, 0.01]",
        "loguint: expected an integer, got true",
        "norm: expected a finite number, got nan",
        "lognorm: -1.0 is not > 0",
        'qu: expected a number, got "0.3"',
        "qlogu: missing",
        "unknown: not in the search space",
    ]


@pytest.mark.parametrize(
    ("value", "ok"),
    [(3, True), (3.0, True), (2.5, True), (True, True), (1, False), ("3", False), (None, True)],
)
def test_categories_match_by_json_type(value: object, ok: bool) -> None:
    space = parse_search_space({"cat": EVERY_METHOD["cat"]})
    assert (validate_point(space, {"cat": value}) == []) is ok


def test_quantised_values_may_step_half_q_outside() -> None:
    space = parse_search_space({"qu": EVERY_METHOD["qu"]})
    assert validate_point(space, {"qu": -0.15}) == []
    assert validate_point(space, {"qu": 1.15}) == []
    assert validate_point(space, {"qu": 1.16}) != []


def test_bounds_tolerate_float_noise() -> None:
    space = parse_search_space({"lr": EVERY_METHOD["loguni"]})
    assert validate_point(space, {"lr": math.exp(math.log(1e-2))}) == []
    assert validate_point(space, {"lr": 1e-2 * (1 + 1e-6)}) != []


def test_validate_point_needs_an_object() -> None:
    space = parse_search_space(PHPO_EQUIVALENT)
    assert validate_point(space, [1, 2]) == [
        "a point must be a JSON object of parameter values, got [1, 2]"
    ]


def test_canonical_key_ignores_order() -> None:
    assert canonical_key({"a": 1, "b": "x"}) == canonical_key({"b": "x", "a": 1})


def test_canonical_key_normalises_numbers() -> None:
    assert canonical_key({"a": 1.0}) == canonical_key({"a": 1})
    assert canonical_key({"a": 0.1 + 0.2}) == canonical_key({"a": 0.3})
    assert canonical_key({"a": -0.0}) == canonical_key({"a": 0})
    assert canonical_key({"a": np.float64(2.5), "b": np.int64(3)}) == canonical_key(
        {"a": 2.5, "b": 3}
    )
    assert canonical_key({"a": 0.3}) != canonical_key({"a": 0.31})
    assert canonical_key({"a": 1e-5}) != canonical_key({"a": 1.00001e-5})


def test_canonical_key_keeps_booleans_and_strings_apart() -> None:
    keys = {canonical_key({"a": v}) for v in (True, 1, "1", None, "true")}
    assert len(keys) == 5


def test_canonical_key_is_plain_json() -> None:
    assert canonical_key({"b": [1.0, {"y": None, "x": True}], "a": "é"}) == (
        '{"a":"\\u00e9","b":[1,{"x":true,"y":null}]}'
    )


def test_canonical_key_refuses_non_json() -> None:
    with pytest.raises(TypeError):
        canonical_key({"a": object()})
