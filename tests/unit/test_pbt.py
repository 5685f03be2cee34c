"""Population-based training as a steering algorithm (``algorithm: pbt``): generations
planned only once the previous one settled, truncation selection with exploit/explore,
each member naming the point whose checkpoint it starts from, the same plan from a
rebuilt optimiser, and the arguments checked at submission."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.api.schemas import TaskSubmission
from services.api.submission import SubmissionError, build_task
from services.steering.sampler import Draw, SegmentOptimizer
from shared.domain.models import Point, PointStatus
from shared.domain.taskconfig import SteeringConfig
from shared.searchspace import canonical_key, parse_search_space

SPACE = parse_search_space(
    {
        "lr": {"method": "loguniform", "dimension": {"low": 1e-4, "high": 1.0}},
        "width": {"method": "uniformint", "dimension": {"low": 1, "high": 64}},
        "act": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
    }
)
POPULATION = 4


def steering(**args: Any) -> SteeringConfig:
    return SteeringConfig(
        algorithm="pbt", args={"population": POPULATION, "generations": 3, **args}
    )


def make(history: list[Point], config: SteeringConfig | None = None) -> SegmentOptimizer:
    return SegmentOptimizer(
        SPACE, history, steering=config or steering(), seed=7, parallelism=POPULATION, budget=12
    )


def stored(index: int, params: dict[str, Any]) -> Point:
    return Point(
        id=f"t.main.{index}",
        task_id="t",
        segment="main",
        index=index,
        params=params,
        key=canonical_key(params),
    )


def evaluated(point: Point, loss: float) -> Point:
    return point.model_copy(update={"status": PointStatus.EVALUATED, "loss": loss})


def store(history: list[Point], drawn: Draw) -> list[Point]:
    new = [stored(len(history) + i, p) for i, p in enumerate(drawn.points)]
    history.extend(new)
    return new


def test_generations_wait_for_the_previous_one_and_the_worst_copy_the_best() -> None:
    optimizer = make([])
    history: list[Point] = []
    first = optimizer.draw(10)
    assert len(first.points) == POPULATION and not first.exhausted
    assert first.parents == [None] * POPULATION
    new = store(history, first)
    # The generation is open: nothing more now, and that is not the end.
    assert optimizer.draw(4) == Draw(points=[], exhausted=False, parents=[])

    losses = [0.4, 0.1, 0.9, 0.3]  # member 1 is the best, member 2 the worst
    settled = [evaluated(p, loss) for p, loss in zip(new, losses, strict=True)]
    history[:] = settled
    optimizer.settle(settled[:3])
    assert optimizer.draw(4).points == []  # member 3 still runs
    optimizer.settle(settled[3:])

    second = optimizer.draw(10)
    assert second.parents == [0, 1, 1, 3]  # the worst (2) starts from the best (1)
    for member in (0, 1, 3):
        assert second.points[member] == first.points[member]  # the others continue
    child, best = second.points[2], first.points[1]
    assert child != best
    assert child["act"] == best["act"] or child["act"] in ("relu", "tanh")
    for name in ("lr", "width"):
        dim = SPACE.dimension(name)
        assert dim.low is not None and dim.high is not None
        assert dim.low <= child[name] <= dim.high
    store(history, second)

    # A rebuilt optimiser plans the same generation from the stored points.
    rebuilt = SegmentOptimizer(
        SPACE, history[:POPULATION], steering=steering(), seed=7, parallelism=4, budget=12
    )
    assert rebuilt.draw(10) == second


def test_the_search_ends_after_the_last_generation() -> None:
    optimizer = make([], steering(generations=2))
    history: list[Point] = []
    for generation in range(2):
        new = store(history, optimizer.draw(10))
        assert len(new) == POPULATION
        done = [evaluated(p, float(i)) for i, p in enumerate(new)]
        history[-POPULATION:] = done
        optimizer.settle(done)
        assert generation == 0 or optimizer.draw(1).exhausted
    assert len(history) == 2 * POPULATION


def test_a_failed_member_ranks_last() -> None:
    optimizer = make([])
    new = store([], optimizer.draw(10))
    done = [evaluated(p, 0.1 * (i + 1)) for i, p in enumerate(new)]  # member 3 worst...
    done[0] = new[0].model_copy(update={"status": PointStatus.FAILED, "loss": None})
    optimizer.settle(done)
    assert optimizer.draw(10).parents == [1, 1, 2, 3]  # ...but the failed one goes


def test_generations_default_to_the_budget() -> None:
    config = SteeringConfig(algorithm="pbt", args={"population": 4})
    optimizer = SegmentOptimizer(SPACE, [], steering=config, seed=1, parallelism=4, budget=9)
    history: list[Point] = []
    for _ in range(3):
        new = store(history, optimizer.draw(10))
        done = [evaluated(p, 1.0) for p in new]
        optimizer.settle(done)
    assert len(history) == 12 and optimizer.draw(1).exhausted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"population": 1}, "population must be a whole number >= 2"),
        ({"perturbation": 0.8}, "perturbation must be a number > 1"),
        ({"resample": 2}, "resample must be a probability"),
        ({"truncation": 0.9}, "truncation must be in (0, 0.5]"),
        ({"mutation": 1}, "unknown argument 'mutation'"),
    ],
)
def test_bad_arguments_are_refused_at_submission(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SteeringConfig(algorithm="pbt", args=args)
    assert message in str(caught.value)


def test_a_conditional_space_is_refused_at_submission_naming_the_algorithm() -> None:
    submission = TaskSubmission.model_validate(
        {
            "config": {
                "evaluationExec": "train",
                "steering": {"algorithm": "pbt", "args": {"population": 2}},
            },
            "searchSpace": {
                "opt": {"method": "categorical", "dimension": {"categories": ["sgd", "adam"]}},
                "momentum": {
                    "method": "uniform",
                    "dimension": {"low": 0, "high": 1},
                    "when": {"opt": ["sgd"]},
                },
            },
        }
    )
    with pytest.raises(SubmissionError) as caught:
        build_task(submission, "alice", max_files_bytes=1000)
    (error,) = caught.value.errors
    assert error["loc"] == ["body", "config", "steering", "algorithm"]
    assert "pbt needs a search space without conditions" in error["msg"]
