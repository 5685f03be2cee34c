"""The repositories on a real MongoDB-protocol server (SecantusDB)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from shared.clock import utcnow
from shared.domain.models import Job, JobStatus, Point, PointOutcome, PointStatus, Task, TaskStatus
from shared.domain.taskconfig import TaskConfig
from shared.store import Store, attempt_job_id

pytestmark = [pytest.mark.mongo]


@pytest.fixture
async def store(mongo_db_url: str) -> AsyncIterator[Store]:
    s = Store(mongo_db_url)
    await s.start()
    await s.start()  # index creation is idempotent
    yield s
    await s.client.drop_database(mongo_db_url.rsplit("/", 1)[1])
    await s.close()


def task(task_id: str = "t1", owner: str = "alice") -> Task:
    return Task(id=task_id, owner=owner, config=TaskConfig(evaluationExec="run"))


def point(index: int) -> Point:
    return Point(
        id=f"t1.main.{index}",
        task_id="t1",
        segment="main",
        index=index,
        params={"x": index},
        key=str(index),
    )


async def test_task_transitions_never_go_backwards(store: Store) -> None:
    await store.tasks.insert(task())
    assert await store.tasks.transition("t1", TaskStatus.RUNNING)
    assert not await store.tasks.transition("t1", TaskStatus.RUNNING)
    ended = "all 1 points evaluated"
    assert await store.tasks.transition("t1", TaskStatus.DONE, reason=ended) is False  # finishing
    assert await store.tasks.transition("t1", TaskStatus.FINISHING)
    assert await store.tasks.transition("t1", TaskStatus.DONE, reason=ended)
    assert not await store.tasks.transition("t1", TaskStatus.CANCELLED, reason="by user")
    stored = await store.tasks.get("t1")
    assert stored is not None and stored.status is TaskStatus.DONE and stored.version == 3
    assert stored.reason == ended
    assert stored.created.tzinfo is not None


@pytest.mark.parametrize("status", [TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED])
async def test_a_task_cannot_end_without_saying_why(store: Store, status: TaskStatus) -> None:
    await store.tasks.insert(task())
    assert await store.tasks.transition("t1", TaskStatus.RUNNING)
    assert await store.tasks.transition("t1", TaskStatus.FINISHING)
    for reason in (None, "", "   "):
        given = {} if reason is None else {"reason": reason}
        with pytest.raises(ValueError, match="needs a reason"):
            await store.tasks.transition("t1", status, **given)
    stored = await store.tasks.get("t1")
    assert stored is not None and stored.status is TaskStatus.FINISHING


async def test_tasks_are_scoped_by_owner(store: Store) -> None:
    await store.tasks.insert(task("t1", "alice"))
    await store.tasks.insert(task("t2", "bob"))
    assert await store.tasks.get_for_owner("t1", "bob") is None
    assert [t.id for t in await store.tasks.list_for_owner("bob")] == ["t2"]


async def test_best_loss_only_improves(store: Store) -> None:
    await store.tasks.insert(task())
    assert await store.tasks.offer_best("t1", 0.5, "p1")
    assert not await store.tasks.offer_best("t1", 0.7, "p2")
    assert await store.tasks.offer_best("t1", 0.1, "p3")
    stored = await store.tasks.get("t1")
    assert stored is not None and (stored.best_loss, stored.best_point_id) == (0.1, "p3")


async def test_point_attempts_and_results_count_once(store: Store) -> None:
    assert await store.points.insert(point(0))
    assert not await store.points.insert(point(0))  # (task, segment, index) is unique
    p = await store.points.get("t1.main.0")
    assert p is not None
    job1 = await store.points.start_attempt(p)
    assert job1 == attempt_job_id(p.id, 1)
    assert await store.points.start_attempt(p) is None  # no longer unevaluated
    assert await store.points.retry(p.id, job1, "boom")
    p = await store.points.get(p.id)
    assert p is not None and p.status is PointStatus.UNEVALUATED and p.attempts == 1
    job2 = await store.points.start_attempt(p)
    assert job2 is not None and job2 != job1
    assert not await store.points.record_result(p.id, job1, 0.3)  # a late, old attempt
    assert await store.points.record_result(p.id, job2, 0.2)
    assert not await store.points.record_result(p.id, job2, 0.1)  # a duplicate
    p = await store.points.get(p.id)
    assert p is not None and p.loss == 0.2 and p.counted_job_id == job2
    counts = await store.points.count_by_status("t1")
    assert counts == {"evaluated": 1}


async def test_lease_generation_guards_reports(store: Store) -> None:
    job = Job(id="j1", task_id="t1", owner="alice", segment="main", point_ids=["p"], attempt=1)
    assert await store.jobs.insert(job)
    assert await store.jobs.lease_next("siteA", "siteA", utcnow()) is None  # not assigned
    assert await store.jobs.assign("j1", "siteA")
    assert not await store.jobs.assign("j1", "siteB")
    leased = await store.jobs.lease_next("siteA", "siteA", utcnow() + timedelta(seconds=60))
    assert leased is not None and leased.generation == 1 and leased.lease is not None
    assert await store.jobs.lease_next("siteA", "siteA", utcnow()) is None
    assert not await store.jobs.finish("j1", 0, [])  # wrong generation
    assert await store.jobs.extend_lease("j1", 1, utcnow() - timedelta(seconds=1), running=True)
    expired = await store.jobs.expired_leases(utcnow())
    assert [j.id for j in expired] == ["j1"]
    assert await store.jobs.mark_lost("j1", 1, "no heartbeat")
    assert not await store.jobs.finish("j1", 1, [PointOutcome(point_id="p", loss=1.0)])
    stored = await store.jobs.get("j1")
    assert stored is not None and stored.status is JobStatus.LOST
    assert [j.id for j in await store.jobs.unapplied()] == ["j1"]
    await store.jobs.mark_applied("j1")
    assert await store.jobs.unapplied() == []


async def test_leases_go_oldest_first(store: Store) -> None:
    for i in range(3):
        job = Job(
            id=f"j{i}",
            task_id="t1",
            owner="a",
            segment="main",
            point_ids=["p"],
            attempt=1,
            created=utcnow() + timedelta(seconds=i),
        )
        await store.jobs.insert(job)
        await store.jobs.assign(job.id, "s")
    order = []
    while (job := await store.jobs.lease_next("s", "s", utcnow())) is not None:
        order.append(job.id)
    assert order == ["j0", "j1", "j2"]


@pytest.mark.parametrize("open_count", [3, 40])  # one query per open point; a range
async def test_changed_for_segment_returns_new_and_newly_settled_points(
    store: Store, open_count: int
) -> None:
    def point(i: int, status: PointStatus) -> Point:
        return Point(
            id=f"c.main.{i}",
            task_id="c",
            segment="main",
            index=i,
            params={"i": i},
            key=str(i),
            status=status,
            loss=1.0 if status is PointStatus.EVALUATED else None,
        )

    total = 100
    first_open = total - open_count
    for i in range(total):
        status = PointStatus.EVALUATED if i < first_open else PointStatus.PENDING
        assert await store.points.insert(point(i, status))
    seen = total - 2  # the optimiser knows points 0..97; 98 and 99 are new to it
    open_indices = [1, *range(first_open, seen)]  # it believes 1 is open: settled since
    changed = await store.points.changed_for_segment("c", "main", seen, open_indices)
    assert [p.index for p in changed] == [1, 98, 99]
    # Only recent open points (one range query from the oldest): is 95 settled since?
    changed = await store.points.changed_for_segment("c", "main", seen, [95, 96])
    settled = [95, 96] if open_count == 3 else []
    assert [p.index for p in changed] == [*settled, 98, 99]


async def test_each_status_change_is_stamped_and_a_job_is_applied_once(store: Store) -> None:
    """The stamps are what the job stage latencies are measured from."""
    job = Job(id="j1", task_id="t1", owner="a", segment="main", point_ids=["p"], attempt=1)
    await store.jobs.insert(job)
    assert await store.jobs.assign("j1", "s")
    assert await store.jobs.lease_next("s", "s", utcnow() + timedelta(seconds=60)) is not None
    for _heartbeat in range(3):
        assert await store.jobs.extend_lease(
            "j1", 1, utcnow() + timedelta(seconds=60), running=True
        )
    assert await store.jobs.finish("j1", 1, [PointOutcome(point_id="p", loss=1.0)])
    stored = await store.jobs.get("j1")
    assert stored is not None
    assert set(stored.stamps) == {"assigned", "leased", "running", "finished"}
    stamps = stored.stamps
    assert stored.created <= stamps["assigned"] <= stamps["leased"] <= stamps["running"]
    assert stamps["running"] < stored.updated  # the first start, not the last heartbeat
    assert stamps["finished"] == stored.updated
    assert await store.jobs.mark_applied("j1")
    assert not await store.jobs.mark_applied("j1")  # a concurrent second apply is told
