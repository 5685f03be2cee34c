"""The Hopaas property parser: suggestion strings to search-space dimensions."""

from __future__ import annotations

from typing import Any

import pytest

from services.api.hopaas_properties import PropertyError, parse_study, parse_suggestion


@pytest.mark.parametrize(
    ("text", "method", "dimension"),
    [
        ("optuna#uniform(-1, 2.5)", "uniform", {"low": -1, "high": 2.5}),
        ("optuna#float(0.1, 1)", "uniform", {"low": 0.1, "high": 1}),
        ("optuna#float(1e-4, 1, log=True)", "loguniform", {"low": 1e-4, "high": 1}),
        ("optuna#float(1e-4, 1, None, True)", "loguniform", {"low": 1e-4, "high": 1}),
        ("optuna#float(0, 1, step=0.25)", "quniform", {"low": 0, "high": 1, "q": 0.25}),
        ("optuna#loguniform(1e-5, 1e-1)", "loguniform", {"low": 1e-5, "high": 1e-1}),
        ("optuna#discrete_uniform(0, 1, 0.1)", "quniform", {"low": 0, "high": 1, "q": 0.1}),
        ("optuna#int(1, 10)", "uniformint", {"low": 1, "high": 10}),
        ("optuna#int(1, 10, 1, False)", "uniformint", {"low": 1, "high": 10}),
        ("optuna#int(1, 1024, log=True)", "loguniformint", {"low": 1, "high": 1024}),
        ("optuna#int(0, 10, step=5)", "categorical", {"categories": [0, 5, 10]}),
        ("optuna#categorical('adam', 'sgd')", "categorical", {"categories": ["adam", "sgd"]}),
        ("optuna#categorical([1, 2, 3])", "categorical", {"categories": [1, 2, 3]}),
        ("optuna#categorical(True, None)", "categorical", {"categories": [True, None]}),
    ],
)
def test_suggestions(text: str, method: str, dimension: dict[str, Any]) -> None:
    assert parse_suggestion("p", text) == {"method": method, "dimension": dimension}


@pytest.mark.parametrize("value", [3, 0.5, "adam", "optuna", None, [1, 2], {"a": 1}])
def test_plain_values_are_not_suggestions(value: object) -> None:
    assert parse_suggestion("p", value) is None


@pytest.mark.parametrize(
    "text",
    [
        "optuna#uniform(0)",
        "optuna#uniform(0, 1, 2)",
        "optuna#normal(0, 1)",
        "optuna#uniform(0, x)",
        "optuna#uniform(0, 1",
        "optuna#int(0.5, 3)",
        "optuna#float(0, 1, step=0.1, log=True)",
        "optuna#uniform(0, float('inf'))",
        "optuna#uniform(low=0, low=1)",
        "optuna#uniform(*[0, 1])",
        "optuna#categorical()",
        "optuna#uniform(" + "-" * 50_000,
        "optuna#uniform(" + "-" * 50_000 + ")",
        "optuna#uniform(" + "(" * 50_000 + ")",
        "optuna#categorical([[1]])",
        "optuna#categorical('a)",
        "optuna#int(0,,10)",
        "optuna#int(0, 10) trailing",
        "optuna#int 0, 10",
        "optuna#int(0, 1000000000, step=2)",
        "optuna#int(1, 10, 1, maybe)",
        "optuna#float(0, 1, NaN, true, 3)",
    ],
)
def test_bad_suggestions_name_the_property(text: str) -> None:
    with pytest.raises(PropertyError) as info:
        parse_suggestion("learning_rate", text)
    assert info.value.name == "learning_rate"


def test_study_spec() -> None:
    body = {
        "lr": "optuna#loguniform(1e-4, 1e-1)",
        "layers": "optuna#int(1, 4)",
        "epochs": 10,
        "hopaas_config": {
            "title": "demo",
            "direction": "maximize",
            "sampler": {"name": "RandomSampler", "args": {"seed": 7}},
            "pruner": {"name": "MedianPruner", "args": {"n_warmup_steps": 2}},
        },
    }
    spec = parse_study(body)
    assert spec.title == "demo"
    assert spec.direction == "maximize"
    assert spec.steering.algorithm == "random"
    assert spec.steering.seed == 7
    assert spec.steering.directions == ["maximize"]
    assert spec.pruner == "MedianPruner"
    assert set(spec.space) == {"lr", "layers"}
    assert spec.fill({"lr": 0.01, "layers": 2}) == {"lr": 0.01, "layers": 2, "epochs": 10}
    assert spec.key("alice") == parse_study(dict(body)).key("alice")
    assert spec.key("alice") != spec.key("bob")
    config = body["hopaas_config"]
    assert isinstance(config, dict)
    for change in (
        {"sampler": {"name": "TPESampler", "args": {"seed": 7}}},
        {"sampler": {"name": "RandomSampler", "args": {"seed": 8}}},
        {"pruner": {"name": "NopPruner", "args": {}}},
        {"pruner": {"name": "MedianPruner", "args": {"n_warmup_steps": 3}}},
        {"direction": "minimize"},
    ):
        changed = parse_study({**body, "hopaas_config": {**config, **change}})
        assert changed.key("alice") != spec.key("alice"), change


@pytest.mark.parametrize("text", ["optuna#uniform(2, 1)", "optuna#int(0,1000,1,true)"])
def test_bounds_are_checked_by_the_search_space(text: str) -> None:
    with pytest.raises(PropertyError) as info:
        parse_study({"x": text})
    assert info.value.name == "x"


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"sampler": {"name": "NoSuchSampler"}}, "hopaas_config.sampler"),
        ({"pruner": {"name": "NoSuchPruner"}}, "hopaas_config.pruner"),
        ({"direction": "sideways"}, "hopaas_config.direction"),
    ],
)
def test_bad_config(config: dict[str, Any], where: str) -> None:
    with pytest.raises(PropertyError) as info:
        parse_study({"x": "optuna#uniform(0, 1)", "hopaas_config": config})
    assert info.value.name == where


def test_a_study_of_fixed_values_only() -> None:
    """The Hopaas client's own tests open studies with no suggestion at all."""
    spec = parse_study({"some_value": 4242, "y": None, "hopaas_config": {"title": "t"}})
    assert spec.space == {}
    assert spec.fill({}) == {"some_value": 4242, "y": None}


def test_nevergrad_optimisers_by_prefixed_name() -> None:
    body = {"x": "optuna#uniform(0, 1)", "hopaas_config": {"title": "t"}}
    body["hopaas_config"] = {"title": "t", "sampler": {"name": "nevergrad:ngopt", "args": {}}}
    steering = parse_study(body).steering
    assert (steering.library, steering.algorithm) == ("nevergrad", "NGOpt")
    body["hopaas_config"] = {"title": "t", "sampler": {"name": "nevergrad:Nope", "args": {}}}
    with pytest.raises(PropertyError) as caught:
        parse_study(body)
    assert caught.value.name == "hopaas_config.sampler"
    assert "NGOpt" in str(caught.value)


# --- as the public Hopaas client writes them ------------------------------------------
# Its suggestions are str() of small dataclasses: Python numbers, lower-case booleans,
# categorical choices joined by commas without quotes; a later version writes JSON
# values and "NaN" for a float without step.


@pytest.mark.parametrize(
    ("text", "method", "dimension"),
    [
        ("optuna#int(2,20,1,false)", "uniformint", {"low": 2, "high": 20}),
        ("optuna#int(1,1024,1,true)", "loguniformint", {"low": 1, "high": 1024}),
        ("optuna#int(1,1024,1,TRUE)", "loguniformint", {"low": 1, "high": 1024}),
        ("optuna#int(0,10,5,false)", "categorical", {"categories": [0, 5, 10]}),
        ("optuna#int(0,10,1,False)", "uniformint", {"low": 0, "high": 10}),
        ("optuna#uniform(0,1)", "uniform", {"low": 0, "high": 1}),
        ("optuna#float(-10.0,10.0)", "uniform", {"low": -10.0, "high": 10.0}),
        ("optuna#float(-10.0,10.0,None,False)", "uniform", {"low": -10.0, "high": 10.0}),
        ("optuna#float(-1.0,1.0,NaN,false)", "uniform", {"low": -1.0, "high": 1.0}),
        ("optuna#float(-1.0,1.0,0.1,false)", "quniform", {"low": -1.0, "high": 1.0, "q": 0.1}),
        ("optuna#float(0.001,1000.0,NaN,true)", "loguniform", {"low": 0.001, "high": 1000.0}),
        ("optuna#loguniform(0.1,100.0)", "loguniform", {"low": 0.1, "high": 100.0}),
        ("optuna#discrete_uniform(-10.0,10.0)", "uniform", {"low": -10.0, "high": 10.0}),
        ("optuna#discrete_uniform(0,1,0.25)", "quniform", {"low": 0, "high": 1, "q": 0.25}),
        (
            "optuna#categorical(successful,unsuccessful,improvable)",
            "categorical",
            {"categories": ["successful", "unsuccessful", "improvable"]},
        ),
        (
            "optuna#categorical(relu, leaky relu ,tanh)",
            "categorical",
            {"categories": ["relu", "leaky relu", "tanh"]},
        ),
        ("optuna#categorical(true,false,none)", "categorical", {"categories": [True, False, None]}),
        ("optuna#categorical(8,16,32)", "categorical", {"categories": [8, 16, 32]}),
        ("optuna#categorical(a,a,b)", "categorical", {"categories": ["a", "a", "b"]}),
        ("optuna#categorical(single)", "categorical", {"categories": ["single"]}),
        ("optuna#int(1, 10, )", "uniformint", {"low": 1, "high": 10}),
        ("optuna#categorical(\"a,b\", 'c)d')", "categorical", {"categories": ["a,b", "c)d"]}),
    ],
)
def test_the_hopaas_clients_suggestions(text: str, method: str, dimension: dict[str, Any]) -> None:
    assert parse_suggestion("p", text) == {"method": method, "dimension": dimension}


def test_a_huge_stepped_int_is_refused_without_listing_it() -> None:
    with pytest.raises(PropertyError) as info:
        parse_suggestion("n", "optuna#int(0, " + "9" * 18 + ", step=2)")
    assert "at most 10000" in info.value.message


def test_special_properties_travel_but_do_not_name_the_study() -> None:
    body = {"x": "optuna#uniform(0, 1)", "hopaas_config": {"title": "t"}}
    one = parse_study({**body, "_node": "gpu-1"})
    other = parse_study({**body, "_node": "gpu-2"})
    assert one.key("alice") == other.key("alice")
    assert one.fill({"x": 0.5}) == {"x": 0.5, "_node": "gpu-1"}
    assert set(one.space) == {"x"}


def nested(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"x": 2**70}, "x"),
        ({"x": float("nan")}, "x"),
        ({"x\0y": "optuna#uniform(0, 1)"}, "x\0y"),
        ({"x": {"deep": nested(40)}}, "x"),
    ],
)
def test_unstorable_properties_name_the_property(body: dict[str, Any], name: str) -> None:
    with pytest.raises(PropertyError) as info:
        parse_study(body)
    assert info.value.name.split(".")[0] == name
