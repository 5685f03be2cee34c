"""Conditional search spaces (docs/input.md): ``when``, ``oneOf`` and ``repeat``, their
validation, sampling only active parameters, rebuilding from conditional points, and the
flat form a steering program gets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.api.schemas import TaskSubmission
from services.api.submission import SubmissionError, build_task
from services.steering.algorithms import DrawRequest, Observation, build_proposer
from services.steering.algorithms.optuna_samplers import OptunaProposer
from services.steering.idds_format import SegmentInput, build_input, select_points
from shared.searchspace import (
    SearchSpaceError,
    active_names,
    parse_search_space,
    snap_point,
    to_idds,
    to_nevergrad,
    to_phpo,
    validate_point,
)

LR = {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1e-1}}
WIDTH = {"method": "uniformint", "dimension": {"low": 8, "high": 64}}
SPACE: dict[str, Any] = {
    "x": {"method": "uniform", "dimension": {"low": 0, "high": 1}},
    "model": {
        "method": "oneOf",
        "options": {
            "cnn": {
                "lr": LR,
                "layers": {
                    "method": "repeat",
                    "count": {"low": 1, "high": 3},
                    "block": {"width": WIDTH},
                },
            },
            "gbt": {
                "depth": {"type": "Scalar", "bounds": [1, 10], "integer": True},
                "dropout": {
                    "method": "uniform",
                    "dimension": {"low": 0, "high": 0.5},
                    "when": {"boost": [True]},
                },
                "boost": {"method": "categorical", "dimension": {"categories": [True, False]}},
            },
            "none": {},
        },
    },
}


def issues(space: object) -> list[str]:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(space)
    return [str(issue) for issue in info.value.issues]


def test_the_three_forms_read_as_dimensions_with_a_parent_each() -> None:
    space = parse_search_space(SPACE)
    got = [(d.name, d.method, d.parent, d.parent_values) for d in space.dimensions]
    assert got == [
        ("x", "uniform", None, ()),
        ("model", "categorical", None, ()),
        ("lr", "loguniform", "model", ("cnn",)),
        ("layers", "uniformint", "model", ("cnn",)),
        ("layers.0.width", "uniformint", "layers", (1, 2, 3)),
        ("layers.1.width", "uniformint", "layers", (2, 3)),
        ("layers.2.width", "uniformint", "layers", (3,)),
        ("depth", "uniformint", "model", ("gbt",)),
        ("boost", "categorical", "model", ("gbt",)),
        ("dropout", "uniform", "boost", (True,)),  # after boost, which it depends on
    ]
    assert space.dimension("model").choices == ("cnn", "gbt", "none")
    assert space.conditional


def test_the_stored_flat_form_with_when_reads_back_as_the_same_space() -> None:
    space = parse_search_space(SPACE)
    stored = to_phpo(space)
    assert stored["layers.1.width"]["when"] == {"layers": [2, 3]}
    assert "when" not in stored["x"]
    assert parse_search_space(json.loads(json.dumps(stored))) == space
    assert parse_search_space(to_idds(space)) == space


def test_a_flat_space_is_written_exactly_as_before() -> None:
    flat = {"lr": LR, "c": {"method": "categorical", "dimension": {"categories": [1, 2]}}}
    assert to_phpo(parse_search_space(flat)) == flat
    assert not parse_search_space(flat).conditional


def test_a_cycle_is_refused_naming_the_key_and_the_cycle() -> None:
    space = {
        "a": {"method": "categorical", "dimension": {"categories": [1, 2]}, "when": {"b": [1]}},
        "b": {"method": "uniformint", "dimension": {"low": 0, "high": 3}, "when": {"c": [2]}},
        "c": {"method": "uniformint", "dimension": {"low": 0, "high": 3}, "when": {"a": [1]}},
    }
    (problem,) = issues(space)
    assert problem.startswith(("a.when", "b.when", "c.when"))
    assert "dependency cycle" in problem
    cycle = problem.split("dependency cycle: ")[1].split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_a_dimension_depending_on_itself_is_a_cycle() -> None:
    space = {"a": {"method": "uniformint", "dimension": {"low": 0, "high": 3}, "when": {"a": [1]}}}
    assert issues(space) == ["a.when.a: dependency cycle: a -> a"]


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (
            {"w": {**LR, "when": {"nope": [1]}}},
            "w.when.nope: no dimension named 'nope' beside 'w'",
        ),
        (
            {
                "c": {"method": "categorical", "dimension": {"categories": ["a"]}},
                "w": {**LR, "when": {"c": ["z"]}},
            },
            'w.when.c.0: "z" is not a value of c (one of ["a"])',
        ),
        (
            {"f": LR, "w": {**LR, "when": {"f": [0.01]}}},
            "w.when.f: f is a loguniform dimension; a condition needs a categorical or integer one",
        ),
        ({"w": {**LR, "when": {"a": [1], "b": [2]}}}, "w.when: must be an object naming one"),
        ({"w": {**LR, "when": {"a": []}}}, "w.when.a: must be a non-empty list"),
        (
            {"m": {"method": "oneOf", "options": {"p": {"lr": LR}, "q": {"lr": LR}}}},
            "m.options.q.lr: the name 'lr' is also used at m.options.p.lr",
        ),
        (
            {
                "m": {
                    "method": "oneOf",
                    "options": {
                        "p": {"lr": {"method": "uniform", "dimension": {"low": 1, "high": 0}}}
                    },
                }
            },
            "m.options.p.lr.dimension.high: must be greater than low (1), got 0",
        ),
        ({"m": {"method": "oneOf", "options": {}}}, "m.options: must be a non-empty object"),
        (
            {"m": {"method": "repeat", "count": {"low": 0, "high": 100}, "block": {"w": WIDTH}}},
            "m.count: must lie within [0, 64], got [0, 100]",
        ),
        (
            {
                "m": {
                    "method": "repeat",
                    "count": {"low": 1, "high": 2},
                    "block": {"w": {"method": "x"}},
                }
            },
            "m.block.w.method: unknown method",
        ),
        (
            # a condition inside an option names a dimension of that option
            {
                "c": {"method": "categorical", "dimension": {"categories": [1]}},
                "m": {"method": "oneOf", "options": {"p": {"lr": {**LR, "when": {"c": [1]}}}}},
            },
            "m.options.p.lr.when.c: no dimension named 'c' beside 'lr'",
        ),
    ],
)
def test_mistakes_are_located(space: dict[str, Any], expected: str) -> None:
    found = issues(space)
    assert any(p.startswith(expected) for p in found), found


def test_a_point_holds_exactly_its_active_parameters() -> None:
    space = parse_search_space(SPACE)
    good = {
        "x": 0.5,
        "model": "cnn",
        "lr": 0.01,
        "layers": 2,
        "layers.0.width": 8,
        "layers.1.width": 9,
    }
    assert validate_point(space, good) == []
    assert validate_point(space, {**good, "depth": 3}) == [
        'depth: not active: used only when model is one of ["gbt"], and it is "cnn"'
    ]
    assert validate_point(space, {**good, "layers": 3}) == ["layers.2.width: missing"]
    assert validate_point(space, {"x": 0.1, "model": "gbt", "depth": 2, "boost": False}) == []
    assert validate_point(space, {"x": 0.1, "model": "none"}) == []


ALGORITHMS = [
    ("optuna", "tpe"),
    ("optuna", "random"),
    ("optuna", "qmc"),
    ("optuna", "cmaes"),
    ("optuna", "nsga2"),
    ("nevergrad", "NGOpt"),
    ("nevergrad", "RandomSearch"),
]


def request(space: Any, algorithm: str, observations: list[Observation], draw: int) -> DrawRequest:
    return DrawRequest(
        space=space,
        algorithm=algorithm,
        args={},
        observations=tuple(observations),
        stored=tuple(o.params for o in observations),
        directions=("minimize",),
        seed=0,
        draw_seed=draw,
        parallelism=2,
        budget=60,
    )


@pytest.mark.parametrize(("library", "algorithm"), ALGORITHMS)
def test_every_algorithm_draws_only_active_parameters_and_rebuilds_from_them(
    library: str, algorithm: str
) -> None:
    """Each draw rebuilds the optimiser from the conditional points drawn so far (one of
    them still open), as a steering process that takes a segment over does."""
    space = parse_search_space(SPACE)
    observations: list[Observation] = []
    models = set()
    draws = 30 if library == "optuna" else 10  # Nevergrad's rebuilds cost more
    for draw in range(draws):
        proposer = build_proposer(library, request(space, algorithm, observations, draw))
        asked = proposer.ask()
        assert asked is not None
        point = snap_point(space, asked)
        assert validate_point(space, point) == [], point
        assert set(point) == active_names(space, point)
        models.add(point["model"])
        open_point = draw == draws - 1
        x = point["x"]
        assert isinstance(x, float)
        loss = None if open_point else (x + (0 if point["model"] == "gbt" else 1),)
        observations.append(Observation(point, loss, draw))
    assert len(models) >= 2  # both sides of the choice were drawn
    if library == "optuna":
        assert isinstance(proposer, OptunaProposer)
        trials = proposer._study.get_trials(deepcopy=False)
        assert len(trials) == 30  # 29 told, the open one, and the last draw
        held = [set(t.params) for t in trials[:29]]
        assert held == [set(o.params) for o in observations[:29]]


def test_tpe_models_the_groups_of_a_conditional_space() -> None:
    space = parse_search_space(SPACE)
    proposer = build_proposer("optuna", request(space, "tpe", [], 0))
    assert isinstance(proposer, OptunaProposer)
    assert getattr(proposer._study.sampler, "_group", None) is True
    flat = parse_search_space({"lr": LR})
    flat_proposer = build_proposer("optuna", request(flat, "tpe", [], 0))
    assert isinstance(flat_proposer, OptunaProposer)
    assert getattr(flat_proposer._study.sampler, "_group", None) is False


def test_nevergrad_gets_a_choice_of_dicts() -> None:
    import nevergrad as ng

    def branches(param: Any) -> list[Any]:
        """Every Choice of Dicts in the parametrisation, depth first."""
        found = []
        inner = list(param.choices) if isinstance(param, ng.p.Choice) else []
        if isinstance(param, ng.p.Dict):
            inner = list(param.values())
        if isinstance(param, ng.p.Choice) and all(isinstance(o, ng.p.Dict) for o in inner):
            found.append(param)
        for item in inner:
            found.extend(branches(item))
        return found

    param = to_nevergrad(parse_search_space(SPACE))
    top = branches(param)
    # model (cnn, gbt, none); layers (1, 2 or 3 blocks) inside cnn; boost inside gbt
    assert [len(c.choices) for c in top] == [3, 3, 2]


def test_a_steering_program_gets_the_flat_form_and_its_inactive_values_are_dropped() -> None:
    space = parse_search_space(SPACE)
    segment = SegmentInput(model_id=0, space=space, history=[], num_points=2)
    document, form = build_input([segment], segmented=False)
    assert form == "idds"
    assert "when" not in json.dumps(document["opt_space"])
    assert set(document["opt_space"]) == set(space.names)
    written = dict.fromkeys(space.names, 1) | {
        "x": 0.5,
        "model": "gbt",
        "lr": 0.01,
        "depth": 3,
        "boost": False,
        "dropout": 0.1,
    }
    selection = select_points([(0, written)], [segment], max_points=10, segmented=False)
    assert selection.segments[0].points == [{"x": 0.5, "model": "gbt", "depth": 3, "boost": False}]


def submission(space: object, **steering: Any) -> TaskSubmission:
    return TaskSubmission.model_validate(
        {
            "config": {
                "evaluationExec": "python toy.py",
                "searchSpaceFile": "space.json",
                "steering": steering,
            },
            "files": {"space.json": json.dumps(space)},
        }
    )


def test_a_submitted_conditional_space_is_stored_with_its_conditions() -> None:
    _, (segment,) = build_task(submission(SPACE), "alice", max_files_bytes=10**6)
    assert parse_search_space(segment.search_space) == parse_search_space(SPACE)


def test_grid_is_refused_for_a_conditional_space_at_submission() -> None:
    with pytest.raises(SubmissionError) as info:
        build_task(submission(SPACE, algorithm="grid"), "alice", max_files_bytes=10**6)
    (error,) = info.value.errors
    assert error["loc"][-3:] == ["config", "steering", "algorithm"]
    assert "conditional" in error["msg"]


def test_bad_conditional_spaces_are_a_located_422_at_submission() -> None:
    bad = {"m": {"method": "oneOf", "options": {"p": {"lr": {**LR, "when": {"q": [1]}}}}}}
    with pytest.raises(SubmissionError) as info:
        build_task(submission(bad), "alice", max_files_bytes=10**6)
    (error,) = info.value.errors
    assert error["loc"][-6:] == ["m", "options", "p", "lr", "when", "q"]
