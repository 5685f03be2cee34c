"""A category written more than once is a weighted choice (the PanDA documentation's own
example writes ``"categories": [1, 1, 2]``): kept as written, drawn as often as written
by the samplers that draw an index, visited once by the grid."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest

from services.steering.algorithms.grid import GridArgs, dimension_values
from shared.searchspace import parse_search_space, to_idds, to_nevergrad, to_optuna, to_phpo

PANDA = {"cnn_block_depths_1": {"method": "categorical", "dimension": {"categories": [1, 1, 2]}}}


def test_the_panda_example_parses_and_keeps_what_was_written() -> None:
    space = parse_search_space(PANDA)
    dim = space.dimension("cnn_block_depths_1")
    assert dim.choices == (1, 1, 2)
    assert (dim.distinct_choices, dim.weights) == ((1, 2), (2, 1))
    assert to_phpo(space) == PANDA
    assert to_idds(space)["cnn_block_depths_1"]["params"]["choices"] == [1, 1, 2]


def test_optunas_random_sampler_draws_a_repeat_as_often_as_written() -> None:
    distributions = to_optuna(parse_search_space(PANDA))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    counts: Counter[int] = Counter()
    for _ in range(1200):
        trial = study.ask(distributions)
        counts[trial.params["cnn_block_depths_1"]] += 1
        study.tell(trial, 0.0)
    assert counts[1] / counts[2] == pytest.approx(2.0, rel=0.2)


def test_nevergrad_starts_from_the_weights() -> None:
    param = to_nevergrad(parse_search_space(PANDA))
    param.random_state.seed(5)
    counts = Counter(param.spawn_child().sample().value["cnn_block_depths_1"] for _ in range(1200))
    assert counts[1] / counts[2] == pytest.approx(2.0, rel=0.2)


def test_the_grid_visits_each_value_once() -> None:
    dim = parse_search_space(PANDA).dimension("cnn_block_depths_1")
    assert dimension_values(dim, GridArgs()) == [1, 2]


def test_true_and_one_cannot_share_a_list() -> None:
    with pytest.raises(ValueError, match="cannot tell them apart"):
        parse_search_space({"x": {"type": "Choice", "params": {"choices": [1, True]}}})
