"""The monitor's columnar snapshot: incremental updates, counts, and what may change."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from services.monitor.snapshot import TaskSnapshot


def doc(index: int, status: str = "evaluated", loss: Any = 0.5, **extra: Any) -> dict[str, Any]:
    return {
        "_id": f"t.main.{index}",
        "segment": "main",
        "index": index,
        "params": {"x": index / 10, "opt": "adam" if index % 2 else "sgd"},
        "status": status,
        "loss": loss,
        "attempts": 1,
        "job_id": f"t.main.{index}.a1",
        "created": datetime(2026, 1, 1, tzinfo=UTC),
        **extra,
    }


def test_rows_are_added_once_and_updated_in_place() -> None:
    snap = TaskSnapshot(1, categorical={"opt"})
    assert snap.apply([doc(0, "pending", None), doc(1)]) == 2
    assert snap.rows == 2 and snap.version == 1
    assert snap.open_indices() == {"main": [0]}
    assert snap.next_index("main") == 2
    # the same documents again change nothing, and the version stays
    assert snap.apply([doc(0, "pending", None), doc(1)]) == 0
    assert snap.version == 1
    assert snap.apply([doc(0, "evaluated", 0.25)]) == 1
    assert snap.rows == 2 and snap.version == 2
    assert snap.open_indices() == {}
    assert snap.loss[:, 0].tolist() == [0.25, 0.5]
    assert snap.counts() == {"unevaluated": 0, "pending": 0, "evaluated": 2, "failed": 0}


def test_categorical_params_are_codes_into_labels() -> None:
    snap = TaskSnapshot(1, categorical={"opt"})
    snap.apply([doc(i) for i in range(4)])
    column = snap.params["opt"]
    assert column.labels == ["sgd", "adam"]
    assert [column.decode(v) for v in snap.values("opt")] == ["sgd", "adam", "sgd", "adam"]
    assert snap.values("x").tolist() == [0.0, 0.1, 0.2, 0.3]


def test_growth_past_the_first_block_keeps_every_row() -> None:
    snap = TaskSnapshot(2)
    snap.apply([doc(i, loss=[float(i), -float(i)]) for i in range(1000)])
    assert snap.rows == 1000
    assert snap.loss[999].tolist() == [999.0, -999.0]
    assert snap.col("index")[500] == 500


def test_intermediate_values_and_pruning_are_kept() -> None:
    snap = TaskSnapshot(1)
    snap.apply([doc(0, "pending", None, intermediate={"0": 3.0, "1": 2.0})])
    snap.apply([doc(0, "pending", None, intermediate={"0": 3.0, "1": 2.0, "2": 1.5})])
    steps, values = snap.curves[0]
    assert steps.tolist() == [0, 1, 2] and values.tolist() == [3.0, 2.0, 1.5]
    snap.apply(
        [doc(0, "evaluated", 1.5, pruned_step=2, intermediate={"0": 3.0, "1": 2.0, "2": 1.5})]
    )
    assert snap.col("pruned")[0] == 2


def test_missing_and_odd_losses_are_nan() -> None:
    snap = TaskSnapshot(2)
    snap.apply([doc(0, loss=None), doc(1, loss=[1.0]), doc(2, loss="bad")])
    assert all(math.isnan(v) for v in snap.loss[0])
    assert snap.loss[1, 0] == 1.0 and math.isnan(snap.loss[1, 1])
    assert math.isnan(snap.loss[2, 0])
