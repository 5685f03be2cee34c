"""Chart series: bounded whatever the task's size, exact where it matters."""

from __future__ import annotations

import random

import numpy as np
import pytest

from services.monitor import series
from services.monitor.snapshot import TaskSnapshot
from shared.domain.pareto import pareto_front


def snapshot(losses: list[float], *, pruned: set[int] = frozenset()) -> TaskSnapshot:  # type: ignore[assignment]
    snap = TaskSnapshot(1)
    snap.apply(
        {
            "_id": f"t.main.{i}",
            "segment": "main",
            "index": i,
            "params": {"x": float(i)},
            "status": "evaluated",
            "loss": loss,
            **({"pruned_step": 3} if i in pruned else {}),
        }
        for i, loss in enumerate(losses)
    )
    return snap


def test_small_histories_are_sent_whole() -> None:
    h = series.history(snapshot([3.0, 1.0, 2.0, 0.5]), "main")
    assert h["x"] == [0, 1, 2, 3] and h["y"] == [3.0, 1.0, 2.0, 0.5]
    assert h["best_x"] == [0, 1, 3, 3] and h["best_y"] == [3.0, 1.0, 0.5, 0.5]


def test_a_large_history_keeps_every_improvement_and_every_bucket_extreme() -> None:
    rng = random.Random(3)
    losses = [rng.random() for _ in range(100_000)]
    snap = snapshot(losses)
    h = series.history(snap, "main", limit=2000)
    assert h["total"] == 100_000
    shown = dict(zip(h["x"], h["y"], strict=True))
    assert len(shown) <= 2000 + len(h["best_x"])
    running = np.minimum.accumulate(losses)
    improvements = [i for i in range(len(losses)) if i == 0 or running[i] < running[i - 1]]
    assert h["best_x"][:-1] == improvements
    assert all(i in shown for i in improvements)
    assert min(losses) in shown.values() and max(losses) in shown.values()
    # each of the 1,000 buckets contributes its own lowest and highest point
    size = 100
    for b in (0, 500, 999):
        chunk = losses[b * size : (b + 1) * size]
        assert b * size + int(np.argmin(chunk)) in shown
        assert b * size + int(np.argmax(chunk)) in shown


def test_a_zoomed_window_is_cut_to_half_the_markers_of_the_whole() -> None:
    """A re-cut is drawn again on every zoom: fewer markers, a cheaper redraw, and
    still ten times the detail of the whole history in a tenth of it."""
    rng = random.Random(5)
    snap = snapshot([rng.random() for _ in range(100_000)])
    whole = series.history(snap, "main")
    window = series.history(snap, "main", x_range=(40_000, 49_999))
    assert len(whole["x"]) > 1500
    assert window["in_window"] == 10_000
    assert len(window["x"]) <= series.WINDOW_LIMIT + len(window["best_x"]) < len(whole["x"])
    shown = set(window["x"])
    assert sum(1 for x in whole["x"] if 40_000 <= x <= 49_999) < len(shown) / 4
    # the window's extremes are kept
    inside = snap.loss[40_000:50_000, 0]
    assert 40_000 + int(np.argmin(inside)) in shown and 40_000 + int(np.argmax(inside)) in shown


def test_zooming_in_recuts_the_buckets_inside_the_window() -> None:
    snap = snapshot([random.Random(i).random() for i in range(50_000)])
    h = series.history(snap, "main", x_range=(1000, 1999), limit=2000)
    assert h["in_window"] == 1000
    assert all(1000 <= x <= 1999 for x in h["x"])
    assert len(h["x"]) == 1000


def test_pruned_points_never_count_as_the_best() -> None:
    h = series.history(snapshot([3.0, 0.1, 2.0], pruned={1}), "main")
    assert h["best_y"] == [3.0, 2.0, 2.0]
    assert h["pruned"] == [False, True, False]


def test_maximising_tasks_track_the_highest() -> None:
    h = series.history(snapshot([1.0, 3.0, 2.0]), "main", maximize=True)
    assert h["best_y"] == [1.0, 3.0, 3.0]


def test_samples_hold_the_best_points_and_stay_bounded() -> None:
    losses = [random.Random(i).random() for i in range(20_000)]
    s = series.slices(snapshot(losses), "main", limit=2000)
    assert len(s["loss"]) == 2000 and s["total"] == 20_000
    best = sorted(losses)[:200]
    assert set(best) <= set(s["loss"])


@pytest.mark.parametrize("k", [2, 3])
def test_the_front_matches_the_reference_implementation(k: int) -> None:
    rng = random.Random(k)
    cost = [[rng.randint(0, 30) for _ in range(k)] for _ in range(600)]
    found = series.nondominated(np.array(cost, dtype=float)).tolist()
    expected = pareto_front([(i, c) for i, c in enumerate(cost)], ["minimize"] * k)
    assert found == expected


def test_curves_are_bounded_and_pruned_ones_marked() -> None:
    snap = TaskSnapshot(1)
    snap.apply(
        {
            "_id": f"t.main.{i}",
            "segment": "main",
            "index": i,
            "params": {},
            "status": "evaluated",
            "loss": 1.0,
            "pruned_step": 4 if i % 3 == 0 else None,
            "intermediate": {str(s): 1.0 / (s + 1) + i for s in range(500)},
        }
        for i in range(300)
    )
    c = series.intermediates(snap, "main", limit=100, steps=200)
    assert c["total"] == 300 and c["pruned"] == 100
    assert len(c["curves"]) == 100
    assert all(len(k["steps"]) <= 201 and k["steps"][-1] == 499 for k in c["curves"])
    assert {k["pruned_step"] for k in c["curves"]} == {None, 4}
