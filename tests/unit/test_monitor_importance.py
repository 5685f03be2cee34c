"""Parameter importance on the monitor's snapshot, for flat and conditional spaces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.monitor.importance import compute, prepare
from services.monitor.snapshot import TaskSnapshot
from shared.searchspace import parse_search_space

CONDITIONAL = {
    "model": {
        "method": "oneOf",
        "options": {
            "cnn": {"width": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}},
            "gbt": {"depth": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}}},
        },
    },
    "lr": {"method": "uniform", "dimension": {"low": 0.0, "high": 1.0}},
}


def doc(index: int, params: dict[str, Any], loss: float) -> dict[str, Any]:
    return {
        "_id": f"t.main.{index}",
        "segment": "main",
        "index": index,
        "params": params,
        "status": "evaluated",
        "loss": loss,
        "attempts": 1,
        "job_id": f"t.main.{index}.a1",
        "created": datetime(2026, 1, 1, tzinfo=UTC),
    }


def test_a_conditional_task_ranks_the_parameters_every_point_has() -> None:
    """Points of a conditional space hold only their active parameters: each is a trial
    of what it has, and the ranking covers what all of them share (here the choice of
    model, which decides the loss, and lr, which does not)."""
    space = parse_search_space(CONDITIONAL)
    snap = TaskSnapshot(1, categorical={"model"})
    docs = []
    for i in range(40):
        lr = (i * 7 % 40) / 40
        if i % 2:
            docs.append(doc(i, {"model": "cnn", "width": i / 40, "lr": lr}, 1.0))
        else:
            docs.append(doc(i, {"model": "gbt", "depth": i / 40, "lr": lr}, 0.0))
    snap.apply(docs)
    trials = prepare(snap, "main", space)
    assert len(trials) == 40
    found = compute(trials, maximize=False)
    assert set(found) == {"model", "lr"}
    assert found["model"] > found["lr"]
