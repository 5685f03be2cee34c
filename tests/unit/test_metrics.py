"""Metrics beside the loss: checked where a site's result is recorded, and the loss a
task computes from them (figureOfMerit, objectives)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from edge.documents import PointRun
from edge.harvester.outcome import PointFiles, point_result
from services.api.results import outcome_of
from shared.domain.metrics import MAX_METRICS
from shared.domain.taskconfig import TaskConfig
from shared.edge_api import PointResult


def _config(**over: Any) -> TaskConfig:
    return TaskConfig.model_validate({"evaluationExec": "true", **over})


def _result(**fields: Any) -> PointResult:
    return PointResult.model_validate({"point_id": "p", **fields})


def test_every_metric_is_kept_with_the_payloads_loss() -> None:
    outcome = outcome_of(_result(loss=0.5, metrics={"acc": 0.9, "time": 12}), _config())
    assert (outcome.status, outcome.loss, outcome.metrics) == (0, 0.5, {"acc": 0.9, "time": 12.0})


def test_figure_of_merit_is_the_weighted_sum_and_replaces_the_loss() -> None:
    config = _config(figureOfMerit={"err": 1.0, "time": 0.01})
    outcome = outcome_of(_result(loss=99, metrics={"err": 0.2, "time": 30, "mem": 4}), config)
    assert outcome.status == 0 and outcome.loss == pytest.approx(0.5)
    assert outcome.metrics == {"err": 0.2, "time": 30.0, "mem": 4.0}


def test_objectives_are_metrics_in_order_with_minimise_by_default() -> None:
    config = _config(objectives=["err", "time"], steering={"algorithm": "nsga2"})
    assert config.steering.directions == ["minimize", "minimize"]
    outcome = outcome_of(_result(metrics={"time": 3, "err": 0.1}), config)
    assert (outcome.status, outcome.loss) == (0, [0.1, 3.0])


def test_a_missing_metric_fails_the_point_with_that_reason() -> None:
    config = _config(figureOfMerit={"err": 1.0, "time": 0.01})
    outcome = outcome_of(_result(metrics={"err": 0.2}), config)
    assert (outcome.status, outcome.loss) == (1, None)
    assert outcome.message == (
        "figureOfMerit needs metric time, which the evaluation did not report "
        "(metrics reported: err)"
    )


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"acc": "high"}, "metrics.acc: must be a finite number, got 'high'"),
        ({"acc": True}, "metrics.acc: must be a finite number, got True"),
        ({"acc": "nan"}, "metrics.acc: must be a finite number, got 'nan'"),
        ({"a.b": 1}, "metrics: metric name 'a.b' must not start with '$' or contain '.'"),
        ({"x" * 101: 1}, "metrics: metric names are at most 100 characters, got 101"),
        (
            {f"m{i}": i for i in range(MAX_METRICS + 1)},
            f"metrics: {MAX_METRICS + 1} reported, at most {MAX_METRICS} are kept",
        ),
    ],
)
def test_unusable_metrics_fail_the_point(metrics: dict[str, Any], message: str) -> None:
    outcome = outcome_of(_result(loss=0.1, metrics=metrics), _config())
    assert (outcome.status, outcome.loss, outcome.message) == (1, None, message)


def test_no_loss_and_no_rule_to_compute_one_fails_with_a_reason() -> None:
    outcome = outcome_of(_result(metrics={"acc": 1}), _config())
    assert outcome.status == 1
    assert outcome.message.startswith('the result has no "loss", and the task defines no')


@pytest.mark.parametrize(
    ("over", "text"),
    [
        ({"figureOfMerit": {"a": 1}, "objectives": ["a"]}, "not both"),
        ({"figureOfMerit": {"a": float("inf")}}, "figureOfMerit"),
        ({"figureOfMerit": {"$a": 1}}, "must not start with '$'"),
        ({"objectives": ["a", "a"]}, "each metric may be one objective only"),
        (
            {"objectives": ["a", "b"], "steering": {"directions": ["minimize"]}},
            "objectives: 2 metrics, but steering.directions has 1 entries",
        ),
        (
            {"figureOfMerit": {"a": 1}, "steering": {"directions": ["minimize", "maximize"]}},
            "figureOfMerit: makes one loss",
        ),
    ],
)
def test_bad_rules_are_refused(over: dict[str, Any], text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _config(**over)
    assert text in str(caught.value)


def _files(output: object) -> PointFiles:
    return PointFiles(
        PointRun(index=0, point_id="p", exit_code=0, started_at=datetime.now(UTC)),
        json.dumps(output),
        "",
    )


def test_the_edge_passes_metrics_on_and_leaves_a_missing_loss_to_the_api() -> None:
    result = point_result("p", "output.json", _files({"metrics": {"acc": 0.9}}))
    assert (result.status, result.loss, result.metrics) == (0, None, {"acc": 0.9})
    with_loss = point_result("p", "output.json", _files({"loss": 0.2, "metrics": {"a": 1}}))
    assert (with_loss.loss, with_loss.metrics) == (0.2, {"a": 1})
    text = '{"loss": 0.2, "metrics": {"a": NaN}}'
    nan = point_result("p", "output.json", PointFiles(_files({}).run, text, ""))
    assert (nan.status, nan.message) == (1, "output.json holds NaN; numbers must be finite")
    still = point_result("p", "output.json", _files({"status": 0}))
    assert still.status == 1 and '"loss" is None' in still.message
