"""The monitor's columnar snapshot: incremental updates, counts, and what may change."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

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


def test_a_stored_part_decodes_to_the_same_rows() -> None:
    from services.monitor import columns
    from services.monitor.snapshot import PART_SIZE

    snap = TaskSnapshot(2, categorical={"opt"})
    docs = [doc(i, loss=[i / 7, -i / 3]) for i in range(PART_SIZE + 30)]
    docs[3] = doc(3, "pending", None)
    docs[4] = doc(4, "failed", None, last_error="exit 1", attempts=3)
    docs[5] = doc(5, intermediate={"0": 1.0, "4": 0.5}, pruned_step=4)
    docs[6] = {**doc(6), "params": {"x": None, "opt": ["odd", 1]}}
    snap.apply(docs)
    assert snap.clean() == {("main", 0), ("main", 1)}
    parts = [columns.encode(snap, "t", "main", n) for n in (1, 0)]
    assert [(p.upto, p.open) for p in parts] == [(PART_SIZE + 30, []), (PART_SIZE, [3])]

    back = TaskSnapshot(2, categorical={"opt"})
    for part in parts:
        assert columns.decode(back, part) == {0: PART_SIZE, 1: 30}[part.part]
    order = [back.row_of(i) for i in snap.ids]
    assert back.rows == snap.rows and None not in order
    assert [back.ids[r] for r in order] == snap.ids  # type: ignore[index]
    assert np.array_equal(back.loss[order], snap.loss, equal_nan=True)
    for name in ("index", "status", "attempts", "pruned", "created", "evaluated"):
        assert np.array_equal(back.col(name)[order], snap.col(name), equal_nan=True)
    decoded = [back.params["opt"].decode(v) for v in back.values("opt")[order]]
    assert decoded == [snap.params["opt"].decode(v) for v in snap.values("opt")]
    assert np.array_equal(back.values("x")[order], snap.values("x"), equal_nan=True)
    assert [back.errors[r] for r in order] == snap.errors  # type: ignore[index]
    assert [back.job_ids[r] for r in order] == snap.job_ids  # type: ignore[index]
    row = back.row_of("t.main.5")
    assert row is not None and back.curves[row][1].tolist() == [1.0, 0.5]
    assert back.open_indices() == {"main": [3]}
    assert back.next_index("main") == PART_SIZE + 30 and back.counts() == snap.counts()
    assert not back.dirty  # what came from the store need not be stored again
    # a row then changing marks its part for storing
    back.apply([doc(3, "evaluated", [0.1, 0.2])])
    assert back.clean() == {("main", 0)} and back.open_indices() == {}


def test_coverage_stops_at_the_first_part_that_is_missing_or_short() -> None:
    from services.monitor import columns
    from services.monitor.snapshot import PART_SIZE
    from shared.store.snapshots import SnapshotPart

    def part(n: int, upto: int) -> SnapshotPart:
        return SnapshotPart("t", "main", n, upto)

    assert columns.coverage([]) == 0
    assert columns.coverage([part(0, PART_SIZE), part(1, 2 * PART_SIZE)]) == 2 * PART_SIZE
    assert columns.coverage([part(0, PART_SIZE), part(1, PART_SIZE + 7)]) == PART_SIZE + 7
    # an older part 1 (written before the monitor died) under a newer part 2
    assert columns.coverage(
        [part(0, PART_SIZE), part(1, PART_SIZE + 7), part(2, 3 * PART_SIZE)]
    ) == (PART_SIZE + 7)
    assert columns.coverage([part(0, PART_SIZE), part(2, 3 * PART_SIZE)]) == PART_SIZE
