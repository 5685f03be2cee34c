"""The stored snapshot of a task: kept by the monitor's periodic pass while the task
runs, restored by a fresh monitor from a few documents, and caught up from the points
it lacks (SecantusDB; documents read counted with a pymongo command listener)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymongo import monitoring

from services.monitor import columns, series
from services.monitor.app import keep_active
from services.monitor.cache import SnapshotCache, TaskEntry
from services.monitor.snapshot import PART_SIZE, TaskSnapshot
from shared.domain.models import Task
from shared.store.mongo import MongoStore
from shared.store.snapshots import SnapshotPart
from tests.browser.seed import seed_task
from tests.integration.central import central, file_artifacts
from tests.integration.monitor_support import monitor_state
from tests.waiting import until

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(300)]

POINTS = 2 * PART_SIZE + 1500


class DocumentsRead(monitoring.CommandListener):
    """Documents each collection handed out (find and getMore replies)."""

    def __init__(self) -> None:
        self.read: Counter[str] = Counter()
        self._collection: dict[int, str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "getMore"):
            name = event.command.get("find") or event.command.get("collection")
            self._collection[event.request_id] = str(name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        name = self._collection.pop(event.request_id, None)
        if name is not None:
            cursor = event.reply.get("cursor", {})
            self.read[name] += len(cursor.get("firstBatch", cursor.get("nextBatch", [])))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._collection.pop(event.request_id, None)


@pytest.fixture
async def counted(mongo_db_url: str) -> AsyncIterator[tuple[MongoStore, DocumentsRead]]:
    listener = DocumentsRead()
    store = MongoStore(mongo_db_url, listeners=[listener])
    await store.start()
    try:
        yield store, listener
    finally:
        await store.close()


async def fresh_monitor(url: str) -> tuple[MongoStore, DocumentsRead]:
    """A restarted monitor: a store client and a cache of its own."""
    listener = DocumentsRead()
    store = MongoStore(url, listeners=[listener])
    await store.start()
    return store, listener


async def loaded(store: MongoStore, task: Task) -> TaskEntry:
    """A fresh cache's entry for ``task``, its stored parts written back."""
    cache = SnapshotCache(store)
    entry = await cache.entry(task)
    await cache.flush()
    return entry


def point(task_id: str, index: int, **fields: Any) -> dict[str, Any]:
    return {
        "_id": f"{task_id}.main.{index}",
        "task_id": task_id,
        "segment": "main",
        "index": index,
        "params": {"lr": 0.01, "dropout": 0.1, "layers": 2, "optimizer": "adam"},
        "attempts": 1,
        "status": "evaluated",
        "loss": 0.001 * index,
        **fields,
    }


async def running_task(store: MongoStore) -> str:
    """A task of :data:`POINTS` points, still running, five of them still pending."""
    task_id = await seed_task(store, "alice", POINTS, curves=20, pruned=5)
    await store.tasks.col.update_one({"_id": task_id}, {"$set": {"status": "running"}})
    await store.points.col.update_many(
        {"task_id": task_id, "index": {"$in": [100, 101, 102, 103, 104]}},
        {"$set": {"status": "pending"}, "$unset": {"loss": ""}},
    )
    return task_id


def read_from_points(docs: list[dict[str, Any]]) -> TaskSnapshot:
    snap = TaskSnapshot(1, categorical={"optimizer"})
    snap.apply(sorted(docs, key=lambda d: int(d["index"])))
    return snap


def labelled(snap: TaskSnapshot) -> dict[str, Any]:
    """The slice series with categorical values as their labels (codes depend on the
    order the values were first seen)."""
    found = series.slices(snap, "main")
    for axis in found["params"]:  # type: ignore[attr-defined]
        if axis["categorical"]:
            labels = axis.pop("labels")
            axis["values"] = [labels[int(v)] for v in axis["values"]]
    return found


def same_series(a: TaskSnapshot, b: TaskSnapshot) -> None:
    assert a.rows == b.rows and a.counts() == b.counts()
    assert series.history(a, "main") == series.history(b, "main")
    assert labelled(a) == labelled(b)
    assert series.intermediates(a, "main") == series.intermediates(b, "main")
    order = [b.row_of(i) for i in a.ids]
    assert np.array_equal(a.loss, b.loss[order], equal_nan=True)


async def test_a_task_kept_while_it_ran_is_first_viewed_from_its_parts_and_caught_up(
    counted: tuple[MongoStore, DocumentsRead], mongo_db_url: str
) -> None:
    store, listener = counted
    task_id = await running_task(store)
    # the monitor's periodic pass, no page open: the parts are stored without a load
    cache = SnapshotCache(store)
    listener.read.clear()
    assert await keep_active(store, cache) == 3
    assert cache.loads == 0 and cache.peek(task_id) is None
    assert listener.read["points"] == POINTS
    listener.read.clear()
    assert await keep_active(store, cache) == 0  # nothing changed: only the open five
    # read again, and the three heads and the part holding them (to compare, unwritten)
    assert listener.read["points"] == 5 and listener.read["monitor_snapshots"] == 4
    # results arrive while no monitor runs (killed): two of the open five, 40 new points
    await store.points.col.update_many(
        {"task_id": task_id, "index": {"$in": [100, 103]}},
        {"$set": {"status": "evaluated", "loss": 0.0001}},
    )
    await store.points.col.insert_many([point(task_id, POINTS + i) for i in range(40)])

    restarted, seen = await fresh_monitor(mongo_db_url)
    try:
        task = await restarted.tasks.get(task_id)
        assert task is not None
        cache = SnapshotCache(restarted)
        entry = await cache.entry(task)
        # the first view read the stored parts, the open points and the new ones only
        assert seen.read["monitor_snapshots"] == 3
        assert seen.read["points"] == 5 + 40
        everything = await store.points.col.find({"task_id": task_id}).to_list()
        same_series(read_from_points(everything), entry.snapshot)
        assert entry.snapshot.counts()["pending"] == 3
        assert entry.snapshot.counts()["evaluated"] == POINTS + 40 - 3
        # and it stored what it read (beside the request): the next monitor reads the
        # three open ones only
        await cache.flush()
        again, counter = await fresh_monitor(mongo_db_url)
        try:
            await loaded(again, task)
            assert counter.read["points"] == 3
        finally:
            await again.close()
    finally:
        await restarted.close()


async def test_a_part_older_than_the_next_is_read_again_from_the_points(
    counted: tuple[MongoStore, DocumentsRead], mongo_db_url: str
) -> None:
    """A monitor killed between two part writes leaves part 1 older than part 2: the
    restore must not trust part 2's coverage, and loses and doubles nothing."""
    store, _ = counted
    task_id = await running_task(store)
    await keep_active(store, SnapshotCache(store))
    # an older state of part 1: it held only its first 10 points, all still pending
    docs = await store.points.col.find({"task_id": task_id}).to_list()
    early = [
        {**d, "status": "pending", "loss": None} if d["index"] >= PART_SIZE else d
        for d in docs
        if d["index"] < PART_SIZE + 10
    ]
    older = columns.encode(read_from_points(early), task_id, "main", 1)
    assert older.upto == PART_SIZE + 10 and len(older.open) == 10
    await store.snapshots.put(older)
    task = await store.tasks.get(task_id)
    assert task is not None

    restarted, seen = await fresh_monitor(mongo_db_url)
    try:
        entry = await loaded(restarted, task)
        # part 1 is short: everything from its end on, and its open ten, from the points
        assert seen.read["points"] == POINTS - (PART_SIZE + 10) + 10 + 5
        same_series(read_from_points(docs), entry.snapshot)
        assert entry.snapshot.rows == POINTS and entry.snapshot.counts()["pending"] == 5
    finally:
        await restarted.close()


async def test_an_unreadable_part_is_read_from_the_points(
    counted: tuple[MongoStore, DocumentsRead], mongo_db_url: str
) -> None:
    store, _ = counted
    task_id = await running_task(store)
    await keep_active(store, SnapshotCache(store))
    junk = SnapshotPart(task_id, "main", 0, upto=PART_SIZE, open=[100], data=b"junk")
    await store.snapshots.put(junk)
    task = await store.tasks.get(task_id)
    assert task is not None
    everything = await store.points.col.find({"task_id": task_id}).to_list()
    restarted, _ = await fresh_monitor(mongo_db_url)
    try:
        cache = SnapshotCache(restarted)
        entry = await cache.entry(task)
        same_series(read_from_points(everything), entry.snapshot)
        await cache.flush()
    finally:
        await restarted.close()
    # the periodic pass meets it too (it is stored again by the load above: spoil it
    # again) and rebuilds the part from its points
    await store.snapshots.put(junk)
    await keep_active(store, SnapshotCache(store))
    again, _ = await fresh_monitor(mongo_db_url)
    try:
        entry = await loaded(again, task)
        same_series(read_from_points(everything), entry.snapshot)
        stored = await again.snapshots.part(task_id, "main", 0)
        assert stored is not None and stored.data != b"junk"
    finally:
        await again.close()


async def test_the_running_monitor_keeps_an_active_tasks_parts_unasked(
    mongo_db_url: str, tmp_path: Path
) -> None:
    """The monitor service's own periodic pass stores the parts, no page open, and
    stores again what arrives."""
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix="",
        artifacts_url=file_artifacts(tmp_path),
        services=["monitor"],
    ) as system:
        store = system.ctx.store
        assert isinstance(store, MongoStore)
        task_id = await running_task(store)

        async def parts(count: int, upto: int) -> bool:
            heads = await store.snapshots.heads(task_id)
            return len(heads) == count and heads[-1].upto == upto

        await until(lambda: parts(3, POINTS))
        await store.points.col.insert_many([point(task_id, POINTS + i) for i in range(10)])
        await until(lambda: parts(3, POINTS + 10))
        assert monitor_state(system).cache.loads == 0
