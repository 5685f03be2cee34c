"""Per-segment point counts kept as a summary derived from the points: right after
every kind of transition, reading only new and open points, and never counting a point
twice when two readers bring the summary up to date (SecantusDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.domain.models import Point
from shared.searchspace import canonical_key
from shared.store.mongo import MongoStore
from tests.integration.central import FakeSite, central, file_artifacts
from tests.integration.test_pipeline import drain, loss_of, submit

pytestmark = [pytest.mark.mongo]


@pytest.fixture
async def store(mongo_db_url: str) -> AsyncIterator[MongoStore]:
    s = MongoStore(mongo_db_url)
    await s.start()
    yield s
    await s.client.drop_database(mongo_db_url.rsplit("/", 1)[1])
    await s.close()


async def add(store: MongoStore, index: int, segment: str = "main") -> Point:
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
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
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


async def test_two_readers_of_a_stale_summary_count_each_point_once(store: MongoStore) -> None:
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


async def test_the_job_builder_keeps_a_tasks_summary_so_no_view_reads_the_whole_task(
    mongo_db_url: str, bus_prefix: str, tmp_path: Path
) -> None:
    async with (
        central(
            mongo_url=mongo_db_url,
            bus_url="memory://",
            bus_prefix=bus_prefix,
            artifacts_url=file_artifacts(tmp_path),
            home=tmp_path,
        ) as system,
        httpx.AsyncClient(base_url=system.api_url, timeout=30) as http,
    ):
        user = await system.token("alice", ["user"])
        task_id = (await submit(http, user, maxPoints=5))["id"]
        site = FakeSite(http, "s1", await system.token("ops", ["edge:s1"]))

        async def answer(job: dict[str, Any]) -> None:
            await site.finish(job, loss_of(job))

        async def ended() -> bool:
            task = await system.ctx.store.tasks.get(task_id)
            return task is not None and task.status.value in ("done", "failed")

        await drain(site, answer, ended)  # the task ends; no view of it is ever asked for
        store = system.ctx.store
        assert isinstance(store, MongoStore)
        doc = await store.summaries.col.find_one({"_id": f"{task_id}.main"})
        assert doc is not None and doc["closed"] == {"evaluated": 5} and doc["open"] == {}
