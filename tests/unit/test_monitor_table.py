"""The points table: filters, sorts and cursors over a snapshot."""

from __future__ import annotations

import pytest

from services.monitor import table
from services.monitor.snapshot import TaskSnapshot


def snap_of(n: int) -> TaskSnapshot:
    snap = TaskSnapshot(1, categorical={"opt"})
    snap.apply(
        {
            "_id": f"t.main.{i}",
            "segment": "main",
            "index": i,
            "params": {"lr": (i % 10) / 10, "opt": ["adam", "sgd"][i % 2]},
            "status": "failed" if i % 7 == 0 else "evaluated",
            "loss": None if i == 5 else float(i % 13),
            "attempts": 1 + i % 3,
        }
        for i in range(n)
    )
    return snap


def indices(snap: TaskSnapshot, page: table.Page) -> list[int]:
    return [int(snap.col("index")[r]) for r in page.rows]


def test_filters_combine_and_name_params_and_categories() -> None:
    snap = snap_of(100)
    page = table.page(snap, filter_text="loss<3, opt=sgd, status=evaluated", limit=500)
    got = indices(snap, page)
    assert got and all(i % 13 < 3 and i % 2 == 1 and i % 7 for i in got)
    assert page.total == len(got)


def test_sorting_descending_puts_rows_without_a_value_last() -> None:
    snap = snap_of(20)
    got = indices(snap, table.page(snap, sort="-loss", limit=20))
    losses = [snap.loss[i, 0] for i in got[:-1]]
    assert losses == sorted(losses, reverse=True)
    assert got[-1] == 5


def test_cursors_walk_every_row_once_even_as_points_arrive() -> None:
    snap = snap_of(250)
    seen: list[int] = []
    cursor = None
    while True:
        page = table.page(snap, sort="loss", cursor=cursor, limit=40)
        seen += indices(snap, page)
        if len(seen) == 80:  # points arrive between pages
            snap.apply(
                {
                    "_id": f"t.main.{i}",
                    "segment": "main",
                    "index": i,
                    "params": {},
                    "status": "evaluated",
                    "loss": 100.0,
                }
                for i in range(250, 260)
            )
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == list(range(260))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"filter_text": "nosuch<1"}, "filter"),
        ({"filter_text": "loss~1"}, "filter"),
        ({"filter_text": "loss<abc"}, "filter"),
        ({"filter_text": "status=done"}, "filter"),
        ({"sort": "nosuch"}, "sort"),
        ({"cursor": "!!!"}, "cursor"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_queries_name_the_parameter(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(table.TableQueryError) as caught:
        table.page(snap_of(5), **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
