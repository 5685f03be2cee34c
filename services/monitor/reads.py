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
from shared.store.documents import Doc
from shared.store.records import Study

CHUNK = 2000
"""Points per query while loading a task."""
MANY_OPEN = 32
"""Above this many open points one range read from the oldest costs less than one
read per open point."""
LIVE_JOB_STATES = [JobStatus.LEASED.value, JobStatus.RUNNING.value]


async def own_task(store: Store, task_id: str, owner: str) -> Task | None:
    return await store.tasks.get_for_owner(task_id, owner)


async def own_tasks(store: Store, owner: str, *, limit: int) -> list[Task]:
    return await store.tasks.list_for_owner(owner, limit=limit)


async def segments(store: Store, task_id: str) -> list[Segment]:
    return await store.segments.list_for_task(task_id)


async def study(store: Store, task_id: str) -> Study | None:
    return await store.studies.get(task_id)


async def point_chunks(
    store: Store, task_id: str, segment: str, *, start: int = 0
) -> AsyncIterator[list[Doc]]:
    """A segment's points from index ``start`` on, in index order, :data:`CHUNK`
    indices at a time (until a chunk is empty), yielding to other work between chunks.

    Each query is a bounded index range: with an open range and a limit instead,
    SecantusDB sorts everything from the start index on at every chunk (4 s per chunk
    at 100k points, quadratic over the load).
    """
    while True:
        docs = await store.points.rows(task_id, segment, start=start, stop=start + CHUNK)
        if not docs:
            return
        docs.sort(key=lambda d: int(d["index"]))
        yield docs
        start += CHUNK
        await asyncio.sleep(0)


async def head_points(store: Store, task_id: str, segment: str, limit: int) -> list[Doc]:
    """A segment's points of index 0 to ``limit`` - 1, in index order (a bounded range)."""
    docs = await store.points.rows(task_id, segment, start=0, stop=limit)
    docs.sort(key=lambda d: int(d["index"]))
    return docs


async def changed_points(
    store: Store, task_id: str, segment: str, next_index: int, open_indices: list[int]
) -> list[Doc]:
    """The points from ``next_index`` on, and the current state of the open ones."""
    points = store.points
    if len(open_indices) > MANY_OPEN:
        return await points.rows(task_id, segment, start=min(open_indices))
    queries = [
        points.rows(task_id, segment, start=next_index),
        *(points.rows(task_id, segment, start=i, stop=i + 1) for i in open_indices),
    ]
    return [doc for batch in await asyncio.gather(*queries) for doc in batch]


async def open_points(
    store: Store, task_id: str, segment: str, indices: list[int], *, below: int
) -> list[Doc]:
    """The current state of the points at ``indices`` (all below ``below``): one read
    each, or one range read when there are many."""
    points = store.points
    if not indices:
        return []
    if len(indices) > MANY_OPEN:
        return await points.rows(task_id, segment, start=min(indices), stop=below)
    found = await asyncio.gather(
        *(points.rows(task_id, segment, start=i, stop=i + 1) for i in indices)
    )
    return [doc for batch in found for doc in batch]


async def status_counts(store: Store, task_id: str) -> dict[str, int]:
    return dict(await store.points.count_by_status(task_id))


def active_job_count(task: Task) -> int:
    """The task's jobs not yet applied, as the store keeps them (``Task.open_jobs``)."""
    return len(task.open_jobs)


async def jobs_by_id(store: Store, job_ids: list[str]) -> dict[str, Job]:
    """The given jobs, in one ``$in`` read on the id (one round trip, not one each)."""
    if not job_ids:
        return {}
    return {job.id: job for job in await store.jobs.get_many(list(dict.fromkeys(job_ids)))}


async def jobs_of_point(store: Store, point_id: str) -> list[Job]:
    """Every attempt of a point: job ids start with the point's id (``<point>.a<n>``)."""
    return await store.jobs.list_for_point(point_id)


async def jobs_in_state(store: Store, task_id: str, states: list[str], *, limit: int) -> list[Job]:
    """A task's jobs in ``states``, newest change first."""
    return await store.jobs.list_in_states(task_id, [JobStatus(s) for s in states], limit=limit)


async def job_state_counts(store: Store, task_id: str) -> dict[str, int]:
    return await store.jobs.count_by_status(task_id)


async def artifacts_of_jobs(store: Store, task_id: str, job_ids: list[str]) -> list[Artifact]:
    return await store.artifacts.list_for_jobs(task_id, job_ids)


async def artifacts_of_point(store: Store, task_id: str, point_id: str) -> list[Artifact]:
    return await store.artifacts.list_for_point(task_id, point_id)


async def artifacts_page(
    store: Store, task_id: str, *, after: str | None, kind: str | None, limit: int
) -> list[Artifact]:
    """A task's artifacts in id order from after ``after``."""
    return await store.artifacts.page(task_id, after=after, kind=kind, limit=limit)


async def artifact(store: Store, artifact_id: str) -> Artifact | None:
    return await store.artifacts.get(artifact_id)


async def sites(store: Store) -> list[tuple[Site, Doc]]:
    """Every site, with its raw document (newer harvesters may report more fields)."""
    return await store.sites.list_with_docs()


async def live_jobs_by_site(store: Store, owner: str | None = None) -> dict[str, int]:
    """Jobs leased or running per site (all owners', or one owner's)."""
    return await store.jobs.live_by_site(owner)


ACTIVE_JOB_VALUES = [s.value for s in ACTIVE_JOB_STATES]
