"""The stored snapshot of each task, kept level-triggered so a fresh monitor never
reads a whole task.

Every part stored (:mod:`shared.store.snapshots`) says up to which index it holds the
segment's points and which of them were still open. A monitor that starts reads the
task's parts (one read), takes their rows in bulk, and reads from the points only what
they lack: the indices from the first part that is not full on, and the open ones
(:func:`restore`). Whatever changed is written back part by part (:func:`save`).
The monitor's periodic pass keeps every active task's parts current whether or not a
page shows it (:func:`keep`), reading only the parts that changed, so the first view of
a task the services ran reads a few documents and the points of the last few seconds.
A kill -9 at any moment loses nothing: a part written is a true state of its points,
one not written is read from the points next time.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from services.monitor import columns, reads
from services.monitor.snapshot import PART_SIZE, TaskSnapshot
from shared.store import Store
from shared.store.documents import Doc
from shared.store.snapshots import SnapshotPart

log = logging.getLogger(__name__)


async def restore(store: Store, task_id: str, snap: TaskSnapshot, segments: list[str]) -> None:
    """Fill an empty ``snap`` from the stored parts, then from the points they lack."""
    parts = await store.snapshots.parts(task_id)
    by_segment: dict[str, list[SnapshotPart]] = defaultdict(list)
    for part in parts:
        by_segment[part.segment].append(part)
    for segment in segments:
        stored = by_segment.get(segment, [])
        readable = []
        for part in stored:
            try:
                columns.decode(snap, part)
                readable.append(part)
            except columns.Unreadable as exc:  # its points are read instead
                log.warning("monitor: a stored part is unreadable (%s)", exc)
        snap.rewind(segment, columns.coverage(readable))
        await catch_up(store, task_id, snap, segment)


async def catch_up(store: Store, task_id: str, snap: TaskSnapshot, segment: str) -> None:
    """Read what ``snap`` lacks of ``segment``: every index from its next one on (in
    bounded ranges) and the current state of its open points below that."""
    start = snap.next_index(segment)
    opens = [i for i in snap.open_indices().get(segment, []) if i < start]
    async for docs in reads.point_chunks(store, task_id, segment, start=start):
        snap.apply(docs)
    snap.apply(await reads.open_points(store, task_id, segment, opens, below=start))


async def save(store: Store, task_id: str, snap: TaskSnapshot) -> int:
    """Write the parts changed since the last save; returns how many."""
    dirty = sorted(snap.clean())
    for segment, number in dirty:
        try:
            await store.snapshots.put(columns.encode(snap, task_id, segment, number))
        except BaseException:
            snap.dirty.update(dirty)  # not written: the next save tries again
            raise
    return len(dirty)


async def keep(
    store: Store, task_id: str, segments: list[str], objectives: int, categorical: set[str]
) -> int:
    """Bring the stored parts of a task no page holds up to date, reading from the
    points only what they lack and from the store only the parts that changed; returns
    how many parts were written."""
    heads = await store.snapshots.heads(task_id)
    written = 0
    for segment in segments:
        stored = {p.part: p for p in heads if p.segment == segment}
        start = columns.coverage(list(stored.values()))
        opens = sorted(i for p in stored.values() for i in p.open if i < start)
        found: list[Doc] = await reads.open_points(store, task_id, segment, opens, below=start)
        async for docs in reads.point_chunks(store, task_id, segment, start=start):
            found.extend(docs)
        by_part: dict[int, list[Doc]] = defaultdict(list)
        for doc in found:
            by_part[int(doc["index"]) // PART_SIZE].append(doc)
        for number, docs in sorted(by_part.items()):
            snap = TaskSnapshot(objectives, categorical)
            if number in stored:
                old = await store.snapshots.part(task_id, segment, number)
                try:
                    if old is not None:
                        columns.decode(snap, old)
                        snap.rewind(segment, old.upto)
                except columns.Unreadable as exc:  # the part is rebuilt from its points
                    log.warning("monitor: a stored part is unreadable (%s)", exc)
                    lo = number * PART_SIZE
                    docs = await store.points.rows(task_id, segment, start=lo, stop=lo + PART_SIZE)
            snap.clean()
            snap.apply(sorted(docs, key=lambda d: int(d["index"])))
            if snap.dirty:
                await save(store, task_id, snap)
                written += 1
    return written
