"""Every database read the monitor makes, each a small function.

They are written as equality and range queries on the store's existing indexes, read
only the fields the dashboard shows, and page through a task's points in chunks, so a
monitor loading a 100k-point task never holds the database in one long scan that the
edge protocol's requests would queue behind. When the store keeps maintained counters,
these are the functions to switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING, DESCENDING

from shared.domain.models import (
    ACTIVE_JOB_STATES,
    Artifact,
    Job,
    JobStatus,
    Segment,
    Site,
    Task,
)
from shared.store import Store
from shared.store.base import Doc, from_doc
from shared.store.studies import Study

CHUNK = 2000
"""Points per query while loading a task."""
MANY_OPEN = 32
"""Above this many open points one range read from the oldest costs less than one
read per open point."""
POINT_FIELDS = {
    "segment": 1,
    "index": 1,
    "params": 1,
    "status": 1,
    "loss": 1,
    "attempts": 1,
    "preemptions": 1,
    "job_id": 1,
    "last_error": 1,
    "pruned_step": 1,
    "intermediate": 1,
    "created": 1,
    "evaluated": 1,
}
LIVE_JOB_STATES = [JobStatus.LEASED.value, JobStatus.RUNNING.value]


async def own_task(store: Store, task_id: str, owner: str) -> Task | None:
    return await store.tasks.get_for_owner(task_id, owner)


async def own_tasks(store: Store, owner: str, *, limit: int) -> list[Task]:
    return await store.tasks.list_for_owner(owner, limit=limit)


async def segments(store: Store, task_id: str) -> list[Segment]:
    return await store.segments.list_for_task(task_id)


async def study(store: Store, task_id: str) -> Study | None:
    return await store.studies.get(task_id)


async def point_chunks(store: Store, task_id: str, segment: str) -> AsyncIterator[list[Doc]]:
    """A segment's points in index order, :data:`CHUNK` indices at a time (until a
    chunk is empty), yielding to other work between chunks.

    Each query is a bounded index range: with an open range and a limit instead,
    SecantusDB sorts everything from the start index on at every chunk (4 s per chunk
    at 100k points, quadratic over the load).
    """
    start = 0
    while True:
        query = {
            "task_id": task_id,
            "segment": segment,
            "index": {"$gte": start, "$lt": start + CHUNK},
        }
        docs = [doc async for doc in store.points.col.find(query, POINT_FIELDS)]
        if not docs:
            return
        docs.sort(key=lambda d: int(d["index"]))
        yield docs
        start += CHUNK
        await asyncio.sleep(0)


async def head_points(store: Store, task_id: str, segment: str, limit: int) -> list[Doc]:
    """A segment's points of index 0 to ``limit`` - 1, in index order (a bounded range)."""
    query = {"task_id": task_id, "segment": segment, "index": {"$gte": 0, "$lt": limit}}
    docs = [doc async for doc in store.points.col.find(query, POINT_FIELDS)]
    docs.sort(key=lambda d: int(d["index"]))
    return docs


async def changed_points(
    store: Store, task_id: str, segment: str, next_index: int, open_indices: list[int]
) -> list[Doc]:
    """The points from ``next_index`` on, and the current state of the open ones."""
    where = {"task_id": task_id, "segment": segment}
    col = store.points.col
    if len(open_indices) > MANY_OPEN:
        first = min(open_indices)
        return [d async for d in col.find({**where, "index": {"$gte": first}}, POINT_FIELDS)]
    queries = [
        col.find({**where, "index": {"$gte": next_index}}, POINT_FIELDS).to_list(),
        *(col.find({**where, "index": i}, POINT_FIELDS).to_list() for i in open_indices),
    ]
    return [doc for batch in await asyncio.gather(*queries) for doc in batch]


async def status_counts(store: Store, task_id: str) -> dict[str, int]:
    return dict(await store.points.count_by_status(task_id))


async def active_job_count(store: Store, task_id: str) -> int:
    return await store.jobs.count(task_id, active_only=True)


async def jobs_by_id(store: Store, job_ids: list[str]) -> dict[str, Job]:
    """The given jobs, in one ``$in`` read on the id (one round trip, not one each)."""
    if not job_ids:
        return {}
    cursor = store.jobs.col.find({"_id": {"$in": list(dict.fromkeys(job_ids))}})
    return {job.id: job for job in [from_doc(Job, doc) async for doc in cursor]}


async def jobs_of_point(store: Store, point_id: str) -> list[Job]:
    """Every attempt of a point: job ids start with the point's id (``<point>.a<n>``)."""
    cursor = store.jobs.col.find(
        {"_id": {"$gte": f"{point_id}.a", "$lt": f"{point_id}.b"}}, sort=[("_id", ASCENDING)]
    )
    return [from_doc(Job, doc) async for doc in cursor]


async def jobs_in_state(store: Store, task_id: str, states: list[str], *, limit: int) -> list[Job]:
    """A task's jobs in ``states``, newest change first (the (task, status) index)."""
    cursor = store.jobs.col.find(
        {"task_id": task_id, "status": {"$in": states}},
        sort=[("updated", DESCENDING)],
        limit=limit,
    )
    return [from_doc(Job, doc) async for doc in cursor]


async def job_state_counts(store: Store, task_id: str) -> dict[str, int]:
    cursor = await store.jobs.col.aggregate(
        [{"$match": {"task_id": task_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    )
    return {str(doc["_id"]): int(doc["n"]) async for doc in cursor}


async def artifacts_of_jobs(store: Store, task_id: str, job_ids: list[str]) -> list[Artifact]:
    cursor = store.artifacts.col.find({"task_id": task_id, "job_id": {"$in": job_ids}})
    return [from_doc(Artifact, doc) async for doc in cursor]


async def artifacts_of_point(store: Store, task_id: str, point_id: str) -> list[Artifact]:
    cursor = store.artifacts.col.find(
        {"task_id": task_id, "job_id": {"$gte": f"{point_id}.a", "$lt": f"{point_id}.b"}},
        sort=[("job_id", ASCENDING), ("created", ASCENDING)],
    )
    return [from_doc(Artifact, doc) async for doc in cursor]


async def artifacts_page(
    store: Store, task_id: str, *, after: str | None, kind: str | None, limit: int
) -> list[Artifact]:
    """A task's artifacts in id order from after ``after`` (the (task, job) index)."""
    query: dict[str, Any] = {"task_id": task_id}
    if after:
        query["_id"] = {"$gt": after}
    if kind:
        query["kind"] = kind
    cursor = store.artifacts.col.find(query, sort=[("_id", ASCENDING)], limit=limit)
    return [from_doc(Artifact, doc) async for doc in cursor]


async def artifact(store: Store, artifact_id: str) -> Artifact | None:
    return await store.artifacts.get(artifact_id)


async def sites(store: Store) -> list[tuple[Site, Doc]]:
    """Every site, with its raw document (newer harvesters may report more fields)."""
    cursor = store.sites.col.find({}, sort=[("_id", ASCENDING)])
    return [(from_doc(Site, doc), doc) async for doc in cursor]


async def live_jobs_by_site(store: Store, owner: str | None = None) -> dict[str, int]:
    """Jobs leased or running per site (all owners', or one owner's)."""
    match: dict[str, Any] = {"status": {"$in": LIVE_JOB_STATES}}
    if owner is not None:
        match["owner"] = owner
    cursor = await store.jobs.col.aggregate(
        [{"$match": match}, {"$group": {"_id": "$site", "n": {"$sum": 1}}}]
    )
    return {str(doc["_id"]): int(doc["n"]) async for doc in cursor}


ACTIVE_JOB_VALUES = [s.value for s in ACTIVE_JOB_STATES]
