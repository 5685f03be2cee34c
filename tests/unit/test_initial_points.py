"""Initial points completed by the space's defaults, in conditional spaces too."""

from __future__ import annotations

import pytest

from shared.searchspace import SearchSpaceError, parse_search_space, to_phpo
from shared.searchspace.initial import complete_point, default_point, initial_points

CONDITIONAL = {
    "model": {"method": "categorical", "dimension": {"categories": ["svm", "mlp"]}},
    "C": {
        "method": "loguniform",
        "dimension": {"low": 0.01, "high": 10},
        "default": 1.0,
        "when": {"model": ["svm"]},
    },
    "width": {
        "method": "uniformint",
        "dimension": {"low": 8, "high": 64},
        "default": 32,
        "when": {"model": ["mlp"]},
    },
}


def test_a_default_fills_in_only_an_active_parameter() -> None:
    space = parse_search_space(CONDITIONAL)
    assert complete_point(space, {"model": "mlp"}) == {"model": "mlp", "width": 32}
    assert complete_point(space, {"model": "svm", "C": 5.0}) == {"model": "svm", "C": 5.0}
    assert default_point(space) is None  # model has no default
    assert initial_points(space, [{"model": "svm"}]) == [{"model": "svm", "C": 1.0}]


def test_an_inactive_value_is_refused_at_its_name() -> None:
    space = parse_search_space(CONDITIONAL)
    with pytest.raises(SearchSpaceError) as caught:
        initial_points(space, [{"model": "svm"}, {"model": "svm", "width": 16}])
    assert caught.value.loc == (1, "width")
    assert "not active" in caught.value.message


def test_defaults_survive_the_stored_form() -> None:
    space = parse_search_space(CONDITIONAL)
    again = parse_search_space(to_phpo(space))
    assert again == space
    assert to_phpo(space)["width"]["default"] == 32


def test_the_defaults_point_is_not_repeated_by_an_equal_entry() -> None:
    space = parse_search_space(
        {"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}, "default": 0.5}}
    )
    assert initial_points(space, []) == [{"x": 0.5}]
    assert initial_points(space, [{"x": 0.2}, {}]) == [{"x": 0.2}, {"x": 0.5}]
