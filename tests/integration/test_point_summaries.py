"""Per-segment point counts kept as a summary derived from the points: right after
every kind of transition, reading only new and open points, and never counting a point
twice when two readers bring the summary up to date (SecantusDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.domain.models import Point
from shared.searchspace import canonical_key
from shared.store import Store

pytestmark = [pytest.mark.mongo]


@pytest.fixture
async def store(mongo_db_url: str) -> AsyncIterator[Store]:
    s = Store(mongo_db_url)
    await s.start()
    yield s
    await s.client.drop_database(mongo_db_url.rsplit("/", 1)[1])
    await s.close()


async def add(store: Store, index: int, segment: str = "main") -> Point:
    params = {"x": index}
    point = Point(
        id=f"t1.{segment}.{index}",
        task_id="t1",
        segment=segment,
        index=index,
        params=params,
        key=canonical_key(params),
    )
    assert await store.points.insert(point)
    return point


async def test_counts_follow_each_transition_and_read_only_new_and_open_points(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = [await add(store, i) for i in range(6)]
    assert await store.summaries.counts("t1", "main") == {"unevaluated": 6}
    jobs = [await store.points.start_attempt(p) for p in points[:4]]
    assert all(jobs)
    assert await store.summaries.counts("t1", "main") == {"unevaluated": 2, "pending": 4}
    assert await store.points.record_result(points[0].id, str(jobs[0]), 0.5)
    assert await store.points.give_up(points[1].id, str(jobs[1]), "boom", 1e9)
    assert await store.points.retry(points[2].id, str(jobs[2]), "again")
    expected = {"evaluated": 1, "failed": 1, "unevaluated": 3, "pending": 1}
    assert await store.summaries.counts("t1", "main") == expected

    read: list[tuple[int, list[int]]] = []
    original = store.points.new_and_open

    async def spy(task_id: str, segment: str, count: int, open_indices: list[int]) -> list[Point]:
        read.append((count, open_indices))
        return await original(task_id, segment, count, open_indices)

    monkeypatch.setattr(store.points, "new_and_open", spy)
    await add(store, 6)
    counts = await store.summaries.counts("t1", "main")
    assert counts == {**expected, "unevaluated": 4}
    assert read == [(6, [2, 3, 4, 5])]  # from the first unseen index, and the open ones


async def test_two_readers_of_a_stale_summary_count_each_point_once(store: Store) -> None:
    points = [await add(store, i) for i in range(4)]
    await store.summaries.counts("t1", "main")
    for p in points:
        job = await store.points.start_attempt(p)
        assert job is not None and await store.points.record_result(p.id, job, 0.1)
    await add(store, 4)
    first, second = await asyncio.gather(
        store.summaries.counts("t1", "main"), store.summaries.counts("t1", "main")
    )
    third = await store.summaries.counts("t1", "main")
    assert first == second == third == {"evaluated": 4, "unevaluated": 1}
    assert await store.summaries.counts("t1", "other") == {}
