"""Store contract (shared/store/port.py), run against every adapter.

The MongoDB case runs on the test server (SecantusDB, ``HPO_TEST_MONGO_URL``) in a fresh
database per test, which it drops at the end; the memory case on a fresh
``memory://`` store. Every repository is covered: the transitions (compare-and-set on
status, generation and owning job), unique keys (refused alike, as False/None or as
:class:`~shared.store.errors.DuplicateKeyError`), the counters and counts, and the
order and pages of every listing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from shared.clock import utcnow
from shared.domain.datasets import DatasetFile
from shared.domain.models import (
    POINT_STATES,
    Artifact,
    CheckpointRef,
    Job,
    JobStatus,
    Point,
    PointOutcome,
    PointStatus,
    Segment,
    Site,
    Task,
    TaskStatus,
    Token,
    WarmStartSummary,
)
from shared.domain.paging import PageKey, PageRequest, PointOrder
from shared.domain.pareto import Direction, pareto_front
from shared.domain.taskconfig import TaskConfig
from shared.store import DuplicateKeyError, Store, attempt_job_id, open_store
from shared.store.records import SteeringCapability, Study
from shared.store.transitions import HELD, MOVES
from tests.waiting import until


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.mongo)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        s = open_store("memory://")
        await s.start()
        yield s
        await s.close()
        return
    from shared.store.mongo import MongoStore, database_name

    url: str = request.getfixturevalue("mongo_db_url")
    mongo = MongoStore(url)
    await mongo.start()
    await mongo.start()  # index creation is idempotent
    try:
        yield mongo
    finally:
        await mongo.client.drop_database(database_name(url))
        await mongo.close()


def task(task_id: str = "t1", owner: str = "alice", **fields: object) -> Task:
    return Task.model_validate(
        {"id": task_id, "owner": owner, "config": TaskConfig(evaluationExec="run"), **fields}
    )


def point(index: int, task_id: str = "t1", segment: str = "main", **fields: object) -> Point:
    return Point.model_validate(
        {
            "id": f"{task_id}.{segment}.{index}",
            "task_id": task_id,
            "segment": segment,
            "index": index,
            "params": {"x": index},
            "key": str(index),
            **fields,
        }
    )


def job(job_id: str = "j1", task_id: str = "t1", **fields: object) -> Job:
    return Job.model_validate(
        {
            "id": job_id,
            "task_id": task_id,
            "owner": "alice",
            "segment": "main",
            "point_ids": ["p"],
            "attempt": 1,
            **fields,
        }
    )


async def leased(store: Store, job_id: str = "j1", site: str = "s") -> Job:
    await store.jobs.insert(job(job_id))
    assert await store.jobs.assign(job_id, site)
    found = await store.jobs.lease_next(site, site, utcnow() + timedelta(seconds=60))
    assert found is not None and found.id == job_id
    return found


def _after(moment: datetime) -> Callable[[], Awaitable[bool | None]]:
    async def passed() -> bool | None:
        return True if utcnow() > moment else None

    return passed


# --- the state machines ------------------------------------------------------------


def test_point_moves_are_the_state_machines() -> None:
    """Every point transition either adapter writes is one POINT_STATES allows, and a
    held one (an attempt's or an ask's) moves only a pending point."""
    for move in MOVES:
        assert move.sources
        for source in move.sources:
            assert POINT_STATES.allowed(source, move.target), move.name
            assert not move.held or source is HELD


# --- tasks -------------------------------------------------------------------------


async def test_task_transitions_never_go_backwards(store: Store) -> None:
    await store.tasks.insert(task())
    assert await store.tasks.transition("t1", TaskStatus.RUNNING)
    assert not await store.tasks.transition("t1", TaskStatus.RUNNING)
    ended = "all 1 points evaluated"
    assert await store.tasks.transition("t1", TaskStatus.DONE, reason=ended) is False
    assert await store.tasks.transition("t1", TaskStatus.FINISHING)
    assert await store.tasks.transition("t1", TaskStatus.DONE, reason=ended)
    assert not await store.tasks.transition("t1", TaskStatus.CANCELLED, reason="by user")
    assert not await store.tasks.transition("nope", TaskStatus.RUNNING)
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


async def test_a_task_id_is_unique(store: Store) -> None:
    await store.tasks.insert(task())
    with pytest.raises(DuplicateKeyError):
        await store.tasks.insert(task(owner="bob"))
    stored = await store.tasks.get("t1")
    assert stored is not None and stored.owner == "alice"


async def test_tasks_are_scoped_by_owner_and_listed_newest_first(store: Store) -> None:
    now = utcnow()
    for i, owner in enumerate(["alice", "bob", "alice", "alice"]):
        out_ds = "user.alice.out/" if i == 2 else "user.alice.other"
        config = TaskConfig(evaluationExec="run", outDS=out_ds)
        await store.tasks.insert(
            task(f"t{i}", owner, config=config, created=now + timedelta(seconds=i))
        )
    assert await store.tasks.get_for_owner("t1", "alice") is None
    assert [t.id for t in await store.tasks.list_for_owner("alice")] == ["t3", "t2", "t0"]
    assert [t.id for t in await store.tasks.list_for_owner("alice", limit=2)] == ["t3", "t2"]
    filed = await store.tasks.list_for_owner("alice", out_ds="user.alice.out")
    assert [t.id for t in filed] == ["t2"]
    assert [t.id for t in await store.tasks.list_all(limit=3)] == ["t3", "t2", "t1"]
    assert await store.tasks.transition("t0", TaskStatus.CANCELLED, reason="by user")
    assert sorted(t.id for t in await store.tasks.list_active()) == ["t1", "t2", "t3"]


async def test_waiting_links_best_loss_and_close(store: Store) -> None:
    await store.tasks.insert(task())
    assert await store.tasks.set_waiting("t1", "no live site")
    assert not await store.tasks.set_waiting("t1", "no live site")  # unchanged: no write
    assert await store.tasks.set_waiting("t1", "")
    await store.tasks.set_link("t1", "mlflow", "http://mlflow/1")
    assert await store.tasks.offer_best("t1", 0.5, "p1")
    assert not await store.tasks.offer_best("t1", 0.7, "p2")
    assert not await store.tasks.offer_best("t1", 0.5, "p2")
    assert await store.tasks.offer_best("t1", 0.1, "p3")
    assert await store.tasks.transition("t1", TaskStatus.RUNNING)
    assert await store.tasks.close("t1", "closed by its owner")
    assert not await store.tasks.close("t1", "again")
    assert not await store.tasks.set_waiting("t1", "ended")  # only an active task
    stored = await store.tasks.get("t1")
    assert stored is not None
    assert (stored.best_loss, stored.best_point_id) == (0.1, "p3")
    assert stored.links == {"mlflow": "http://mlflow/1"}
    assert (stored.status, stored.reason, stored.waiting) == (
        TaskStatus.DONE,
        "closed by its owner",
        "",
    )


# --- segments ----------------------------------------------------------------------


def segment(index: int, task_id: str = "t1") -> Segment:
    return Segment(
        id=f"{task_id}.s{index}", task_id=task_id, name=f"s{index}", index=index, search_space={}
    )


async def test_segments_are_unique_per_task_index_and_listed_in_order(store: Store) -> None:
    await store.segments.insert_many([segment(1), segment(0)])
    await store.segments.insert_many([segment(0, "t2")])
    with pytest.raises(DuplicateKeyError):
        await store.segments.insert_many([segment(0)])
    twin = segment(1).model_copy(update={"id": "t1.other"})
    with pytest.raises(DuplicateKeyError):
        await store.segments.insert_many([twin])
    assert [s.index for s in await store.segments.list_for_task("t1")] == [0, 1]
    await store.segments.mark_exhausted("t1.s0")
    await store.segments.set_warm_start("t1.s0", WarmStartSummary(told=3, skipped={"x": 1}))
    stored = await store.segments.get("t1.s0")
    assert stored is not None and stored.exhausted
    assert stored.warm_start == WarmStartSummary(told=3, skipped={"x": 1})


async def test_a_segment_lease_has_one_owner_until_it_runs_out(store: Store) -> None:
    await store.segments.insert_many([segment(0)])
    now = utcnow()
    soon = now + timedelta(seconds=30)
    assert await store.segments.claim("t1.s0", "a", now, soon)
    assert not await store.segments.claim("t1.s0", "b", now, soon)
    assert await store.segments.claim("t1.s0", "a", now, soon)  # renewal
    assert await store.segments.owner_of("t1.s0", now) == "a"
    later = soon + timedelta(seconds=1)
    assert await store.segments.owner_of("t1.s0", later) is None
    assert await store.segments.claim("t1.s0", "b", later, later + timedelta(seconds=30))
    await store.segments.release(["t1.s0"], "a")  # not a's any more: unchanged
    assert await store.segments.owner_of("t1.s0", later) == "b"
    await store.segments.release(["t1.s0"], "b")
    assert await store.segments.owner_of("t1.s0", later) is None
    assert await store.segments.claim("t1.s0", "c", later, later + timedelta(seconds=30))
    assert not await store.segments.claim("missing", "c", later, later)


# --- points ------------------------------------------------------------------------


async def test_point_attempts_and_results_count_once(store: Store) -> None:
    assert await store.points.insert(point(0))
    assert not await store.points.insert(point(0))  # (task, segment, index) is unique
    assert not await store.points.insert(point(0).model_copy(update={"id": "other"}))
    p = await store.points.get("t1.main.0")
    assert p is not None
    job1 = await store.points.start_attempt(p)
    assert job1 == attempt_job_id(p.id, 1)
    assert await store.points.start_attempt(p) is None  # no longer unevaluated
    assert await store.points.retry(p.id, job1, "boom")
    assert not await store.points.retry(p.id, job1, "boom")
    p = await store.points.get(p.id)
    assert p is not None and p.status is PointStatus.UNEVALUATED and p.attempts == 1
    assert p.last_error == "boom"
    job2 = await store.points.start_attempt(p)
    assert job2 is not None and job2 != job1
    assert not await store.points.record_result(p.id, job1, 0.3)  # a late, old attempt
    assert await store.points.record_result(p.id, job2, 0.2)
    assert not await store.points.record_result(p.id, job2, 0.1)  # a duplicate
    assert not await store.points.give_up(p.id, job2, "late", 1e10)
    p = await store.points.get(p.id)
    assert p is not None and p.loss == 0.2 and p.counted_job_id == job2
    assert p.evaluated is not None and p.evaluated.tzinfo is not None
    assert await store.points.count_by_status("t1") == {"evaluated": 1}


async def test_a_stale_point_cannot_start_an_attempt(store: Store) -> None:
    assert await store.points.insert(point(0))
    p = await store.points.get("t1.main.0")
    assert p is not None
    stale = p.model_copy(update={"attempts": 5})
    assert await store.points.start_attempt(stale) is None
    assert await store.points.start_attempt(p) is not None


async def test_a_preempted_attempt_resumes_and_gives_up_with_the_large_loss(
    store: Store,
) -> None:
    assert await store.points.insert(point(0))
    p = await store.points.get("t1.main.0")
    assert p is not None
    first = await store.points.start_attempt(p)
    assert first is not None
    assert await store.points.resume(p.id, first, "walltime")
    p = await store.points.get(p.id)
    assert p is not None and p.resume and p.preemptions == 1 and p.status is PointStatus.UNEVALUATED
    again = await store.points.start_attempt(p)
    assert again == attempt_job_id(p.id, 1, 1)  # the same attempt continues
    p = await store.points.get(p.id)
    assert p is not None and p.attempts == 1 and not p.resume
    assert await store.points.give_up(p.id, again, "out of attempts", 1e10)
    p = await store.points.get(p.id)
    assert p is not None and p.status is PointStatus.FAILED and p.loss == 1e10
    assert p.counted_job_id == again and p.last_error == "out of attempts"


async def test_only_the_owning_attempt_saves_newer_checkpoints(store: Store) -> None:
    assert await store.points.insert(point(0))
    p = await store.points.get("t1.main.0")
    assert p is not None
    owner = await store.points.start_attempt(p)
    assert owner is not None

    def ref(seq: int, job_id: str = owner) -> CheckpointRef:
        return CheckpointRef(key=f"k{seq}", size=1, sha256="0" * 64, job_id=job_id, seq=seq)

    assert not await store.points.save_checkpoint(p.id, ref(1, "someone.else"))
    assert await store.points.save_checkpoint(p.id, ref(2))
    assert not await store.points.save_checkpoint(p.id, ref(1))  # older snapshot
    assert not await store.points.save_checkpoint(p.id, ref(2))
    assert await store.points.save_checkpoint(p.id, ref(3))
    stored = await store.points.get(p.id)
    assert stored is not None and stored.checkpoint is not None and stored.checkpoint.seq == 3


async def test_a_history_of_points_is_inserted_at_once_in_order(store: Store) -> None:
    await store.points.insert_many([])
    done = {"status": PointStatus.EVALUATED, "loss": 0.5, "attempts": 1}
    await store.points.insert_many([point(0, **done), point(1, **done), point(2)])
    assert [p.index for p in await store.points.list_for_segment("t1", "main")] == [0, 1, 2]
    assert await store.points.count_by_status("t1") == {"evaluated": 2, "unevaluated": 1}
    with pytest.raises(DuplicateKeyError):  # the second is taken: the first is stored
        await store.points.insert_many([point(3), point(1), point(4)])
    twin = point(0).model_copy(update={"id": "t1.main.other"})
    with pytest.raises(DuplicateKeyError):  # (task, segment, index) is unique
        await store.points.insert_many([twin])
    assert [p.index for p in await store.points.list_for_segment("t1", "main")] == [0, 1, 2, 3]
    stored = await store.points.get("t1.main.1")
    assert stored is not None and stored.status is PointStatus.EVALUATED and stored.loss == 0.5


async def test_point_listings_counts_and_rows(store: Store) -> None:
    for i in (2, 0, 1):
        assert await store.points.insert(point(i))
    assert await store.points.insert(point(0, segment="other", status=PointStatus.PENDING))
    assert await store.points.insert(point(0, task_id="t2"))
    assert [p.index for p in await store.points.list_for_segment("t1", "main")] == [0, 1, 2]
    pending = await store.points.list_for_task("t1", status=PointStatus.PENDING)
    assert [p.id for p in pending] == ["t1.other.0"]
    assert len(await store.points.list_for_task("t1", limit=2)) == 2
    assert await store.points.count_by_status("t1", "main") == {"unevaluated": 3}
    assert await store.points.count_by_segment("t1") == {
        "main": {"unevaluated": 3},
        "other": {"pending": 1},
    }
    rows = await store.points.rows("t1", "main", start=1, stop=3)
    assert sorted(r["index"] for r in rows) == [1, 2]
    row = next(r for r in rows if r["index"] == 1)
    assert row["_id"] == "t1.main.1" and row["params"] == {"x": 1} and "key" not in row
    assert [r["index"] for r in await store.points.rows("t1", "main", start=2, stop=3)] == [2]
    assert sorted(r["index"] for r in await store.points.rows("t1", "main", start=1)) == [1, 2]


@pytest.mark.parametrize("open_count", [3, 40])  # one query per open point; a range
async def test_changed_for_segment_returns_new_and_newly_settled_points(
    store: Store, open_count: int
) -> None:
    total = 100
    first_open = total - open_count
    for i in range(total):
        status = PointStatus.EVALUATED if i < first_open else PointStatus.PENDING
        loss = 1.0 if status is PointStatus.EVALUATED else None
        assert await store.points.insert(point(i, "c", status=status, loss=loss))
    seen = total - 2  # the optimiser knows points 0..97; 98 and 99 are new to it
    open_indices = [1, *range(first_open, seen)]  # it believes 1 is open: settled since
    changed = await store.points.changed_for_segment("c", "main", seen, open_indices)
    assert [p.index for p in changed] == [1, 98, 99]
    changed = await store.points.changed_for_segment("c", "main", seen, [95, 96])
    settled = [95, 96] if open_count == 3 else []
    assert [p.index for p in changed] == [*settled, 98, 99]


# --- jobs --------------------------------------------------------------------------


async def test_lease_generation_guards_reports(store: Store) -> None:
    assert await store.jobs.insert(job())
    assert not await store.jobs.insert(job())  # the id is unique
    assert await store.jobs.lease_next("siteA", "siteA", utcnow()) is None  # not assigned
    assert await store.jobs.assign("j1", "siteA")
    assert not await store.jobs.assign("j1", "siteB")
    lease = await store.jobs.lease_next("siteA", "siteA", utcnow() + timedelta(seconds=60))
    assert lease is not None and lease.generation == 1 and lease.lease is not None
    assert lease.status is JobStatus.LEASED
    assert await store.jobs.lease_next("siteA", "siteA", utcnow()) is None
    assert not await store.jobs.finish("j1", 0, [])  # wrong generation
    assert not await store.jobs.extend_lease("j1", 2, utcnow(), running=True)
    assert await store.jobs.extend_lease(
        "j1", 1, utcnow() - timedelta(seconds=1), running=True, host="node7"
    )
    assert [j.id for j in await store.jobs.expired_leases(utcnow())] == ["j1"]
    assert await store.jobs.live_at_site("siteA") != []
    assert await store.jobs.mark_lost("j1", 1, "no heartbeat")
    assert not await store.jobs.finish("j1", 1, [PointOutcome(point_id="p", loss=1.0)])
    assert not await store.jobs.extend_lease("j1", 1, utcnow(), running=True)
    stored = await store.jobs.get("j1")
    assert stored is not None and stored.status is JobStatus.LOST and stored.host == "node7"
    assert stored.reason == "no heartbeat"
    assert [j.id for j in await store.jobs.unapplied()] == ["j1"]
    assert await store.jobs.mark_applied("j1")
    assert await store.jobs.unapplied() == []


async def test_leases_go_oldest_first_and_assignment_can_be_undone(store: Store) -> None:
    for i in range(3):
        await store.jobs.insert(job(f"j{i}", created=utcnow() + timedelta(seconds=i)))
        assert await store.jobs.assign(f"j{i}", "s", "gpu")
    assert await store.jobs.count_assigned("s") == 3
    assert await store.jobs.unassign("j1")
    assert not await store.jobs.unassign("j1")
    back = await store.jobs.get("j1")
    assert back is not None and back.status is JobStatus.DEFINED and back.site is None
    assert back.compute_class is None
    assert await store.jobs.count_assigned("s") == 2
    order = []
    while (found := await store.jobs.lease_next("s", "s", utcnow())) is not None:
        order.append(found.id)
        assert found.compute_class == "gpu"
    assert order == ["j0", "j2"]


async def test_each_status_change_is_stamped_and_a_job_is_applied_once(store: Store) -> None:
    """The stamps are what the job stage latencies are measured from."""
    await leased(store)
    assert await store.jobs.extend_lease("j1", 1, utcnow() + timedelta(seconds=60), running=True)
    started = utcnow()
    # Stored times keep milliseconds: let the clock pass one before the later heartbeats.
    await until(_after(started + timedelta(milliseconds=2)), every=0.001)
    for _heartbeat in range(2):
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
    assert stored.results == [PointOutcome(point_id="p", loss=1.0)]
    assert await store.jobs.mark_applied("j1")
    assert not await store.jobs.mark_applied("j1")  # a concurrent second apply is told


async def test_a_history_of_jobs_is_inserted_at_once_in_order(store: Store) -> None:
    await store.jobs.insert_many([])
    await store.jobs.insert_many([job("j1", status=JobStatus.FINISHED), job("j2")])
    assert await store.jobs.count("t1", active_only=True) == 1
    assert await store.jobs.count("t1", active_only=False) == 2
    with pytest.raises(DuplicateKeyError):  # j1 is taken: j3 before it is stored
        await store.jobs.insert_many([job("j3"), job("j1"), job("j4")])
    stored = await store.jobs.get_many(["j1", "j2", "j3", "j4"])
    assert sorted(j.id for j in stored) == ["j1", "j2", "j3"]
    first = await store.jobs.get("j1")
    assert first is not None and first.status is JobStatus.FINISHED


async def test_job_counts_cancellation_and_listings(store: Store) -> None:
    past = utcnow() - timedelta(seconds=10)  # before the jobs leased below
    await store.jobs.insert(job("p1.a1", created=past))
    await store.jobs.insert(job("p1.a2", created=past + timedelta(seconds=1)))
    await store.jobs.insert(job("p10.a1", created=past + timedelta(seconds=2)))
    await store.jobs.insert(job("other", task_id="t2", created=past + timedelta(seconds=3)))
    await leased(store, "gone", site="s2")
    assert await store.jobs.preempt("gone", 1, "walltime")
    assert await store.jobs.count("t1", active_only=True) == 3
    assert await store.jobs.count("t1", active_only=False) == 3  # the preempted one continues
    assert await store.jobs.count_unapplied("t1") == 4
    assert [j.id for j in await store.jobs.list_for_point("p1")] == ["p1.a1", "p1.a2"]
    assert [j.id for j in await store.jobs.list_for_task("t1", limit=2)] == ["p1.a1", "p1.a2"]
    assert [j.id for j in await store.jobs.list_by_status(JobStatus.DEFINED, limit=2)] == [
        "p1.a1",
        "p1.a2",
    ]
    await leased(store, "live", site="s1")
    assert await store.jobs.live_by_site() == {"s1": 1}
    assert await store.jobs.live_by_site("bob") == {}
    assert await store.jobs.cancel_task_jobs("t1", "by user") == 4
    assert await store.jobs.cancel_task_jobs("t1", "by user") == 0
    assert await store.jobs.count("t1", active_only=True) == 0
    assert await store.jobs.count_by_status("t1") == {"cancelled": 4, "preempted": 1}
    cancelled = await store.jobs.get("live")
    assert cancelled is not None and "cancelled" in cancelled.stamps
    assert not await store.jobs.finish("live", 1, [])
    newest = await store.jobs.list_in_states("t1", [JobStatus.CANCELLED], limit=10)
    assert [j.updated for j in newest] == sorted((j.updated for j in newest), reverse=True)
    assert len(await store.jobs.list_in_states("t1", [JobStatus.CANCELLED], limit=2)) == 2


async def open_jobs(store: Store, task_id: str = "t1") -> list[str]:
    found = await store.tasks.get(task_id)
    assert found is not None
    return sorted(found.open_jobs)


async def assigned_jobs(store: Store, site: str = "s") -> list[str]:
    found = await store.sites.get(site)
    assert found is not None
    return sorted(found.assigned_jobs)


async def test_a_task_counts_each_job_open_from_its_insert_to_its_apply_once(
    store: Store,
) -> None:
    await store.tasks.insert(task())
    assert await open_jobs(store) == []
    assert await store.jobs.insert(job("j1"))
    assert not await store.jobs.insert(job("j1"))  # a repeated insert counts nothing
    assert await store.jobs.insert(job("j2"))
    assert await open_jobs(store) == ["j1", "j2"]
    await leased(store, "j3")
    assert await store.jobs.finish("j3", 1, [])
    assert not await store.jobs.finish("j3", 1, [])
    assert await open_jobs(store) == ["j1", "j2", "j3"]  # open until its outcome is applied
    assert await store.jobs.mark_applied("j3")
    assert not await store.jobs.mark_applied("j3")  # lost its condition: moves nothing
    assert await open_jobs(store) == ["j1", "j2"]
    assert not await store.jobs.insert(job("j3"))  # an applied job inserted again stays closed
    assert await open_jobs(store) == ["j1", "j2"]
    assert await store.jobs.cancel_task_jobs("t1", "by user") == 2
    assert await open_jobs(store) == ["j1", "j2"]
    assert sorted(await store.jobs.open_ids("t1")) == ["j1", "j2"]
    for job_id in ("j1", "j2"):
        assert await store.jobs.mark_applied(job_id)
    assert await open_jobs(store) == []
    assert await store.jobs.open_ids("t1") == []


async def test_a_job_applied_without_closing_is_closed_by_the_next_build_lock(
    store: Store,
) -> None:
    """The job builder drops a job it applied with the write that takes the task's
    build lock (one write less); a lock it does not get drops nothing."""
    await store.tasks.insert(task())
    for job_id in ("j1", "j2"):
        assert await store.jobs.insert(job(job_id))
        await store.jobs.cancel_task_jobs("t1", "by user")
        assert await store.jobs.mark_applied(job_id, close=False)
    assert await open_jobs(store) == ["j1", "j2"]
    now = utcnow()
    soon = now + timedelta(seconds=30)
    held = await store.tasks.claim_build("t1", "a", now, soon, closing=["j1"])
    assert held is not None and held.open_jobs == ["j2"]  # as it is after the write
    assert await store.tasks.claim_build("t1", "b", now, soon, closing=["j2"]) is None
    assert await open_jobs(store) == ["j2"]


async def test_a_job_counted_against_the_budget_on_insert_is_counted_once(store: Store) -> None:
    await store.tasks.insert(task(jobs_counted=0))
    assert await store.jobs.insert(job("j1"), counted=True)
    assert not await store.jobs.insert(job("j1"), counted=True)  # repeated: counted once
    assert await store.jobs.insert(job("j2"))
    found = await store.tasks.get("t1")
    assert found is not None and found.jobs_counted == 1
    assert sorted(found.open_jobs) == ["j1", "j2"]


async def test_a_site_counts_each_job_assigned_until_leased_taken_back_or_cancelled_once(
    store: Store,
) -> None:
    await store.sites.heartbeat(Site(id="s", free_slots=4))
    await store.sites.heartbeat(Site(id="s2", free_slots=4))
    for i in range(4):
        await store.jobs.insert(job(f"j{i}", created=utcnow() + timedelta(seconds=i)))
        assert await store.jobs.assign(f"j{i}", "s")
    assert not await store.jobs.assign("j0", "s")  # lost its condition: moves nothing
    assert not await store.jobs.assign("j0", "s2")
    assert await assigned_jobs(store) == ["j0", "j1", "j2", "j3"]
    assert await assigned_jobs(store, "s2") == []
    await store.sites.heartbeat(Site(id="s", free_slots=3))  # a heartbeat keeps the count
    assert await assigned_jobs(store) == ["j0", "j1", "j2", "j3"]
    assert await store.jobs.unassign("j1")
    assert not await store.jobs.unassign("j1")
    assert await assigned_jobs(store) == ["j0", "j2", "j3"]
    leased_now = await store.jobs.lease_next("s", "s", utcnow() + timedelta(seconds=60))
    assert leased_now is not None and leased_now.id == "j0"
    assert await assigned_jobs(store) == ["j2", "j3"]
    assert sorted(await store.jobs.assigned_ids("s")) == ["j2", "j3"]
    assert await store.jobs.cancel_task_jobs("t1", "by user") == 4  # j0 leased, j1 defined
    assert await assigned_jobs(store) == []
    assert await store.jobs.assigned_ids("s") == []


async def test_the_repairs_put_a_drifted_count_right(store: Store) -> None:
    """What a process killed between a job's write and its count's leaves (an id too
    many), or any other drift, is put right by the owner's periodic pass with these."""
    await store.tasks.insert(task())
    await store.sites.heartbeat(Site(id="s", free_slots=2))
    await store.jobs.insert(job("j1"))
    assert await store.jobs.assign("j1", "s")
    await store.tasks.repair_open_jobs("t1", ["ghost", "j1"], [])
    await store.sites.repair_assigned("s", ["ghost"], [])
    assert await open_jobs(store) == ["ghost", "j1"]
    assert await assigned_jobs(store) == ["ghost", "j1"]
    await store.tasks.repair_open_jobs("t1", [], ["ghost", "j1"])
    await store.sites.repair_assigned("s", [], ["ghost", "j1"])
    assert await open_jobs(store) == [] and await assigned_jobs(store) == []
    await store.tasks.repair_open_jobs("t1", ["j1"], [])
    await store.sites.repair_assigned("s", ["j1"], [])
    assert await open_jobs(store) == ["j1"] and await assigned_jobs(store) == ["j1"]
    await store.tasks.repair_open_jobs("nope", ["j1"], ["j2"])  # no such task: nothing
    await store.sites.repair_assigned("nope", ["j1"], ["j2"])
    assert await store.tasks.get("nope") is None and await store.sites.get("nope") is None


# --- sites, tokens, artifacts ------------------------------------------------------


async def test_site_heartbeats_upsert_and_age(store: Store) -> None:
    old = utcnow() - timedelta(minutes=5)
    await store.sites.heartbeat(Site(id="b", free_slots=1, last_heartbeat=old))
    await store.sites.heartbeat(Site(id="a", free_slots=2))
    await store.sites.heartbeat(Site(id="a", free_slots=3))
    since = utcnow() - timedelta(minutes=1)
    assert [s.id for s in await store.sites.list_alive(since)] == ["a"]
    assert [s.id for s in await store.sites.list_all()] == ["a", "b"]
    with_docs = await store.sites.list_with_docs()
    assert [(s.id, d["free_slots"]) for s, d in with_docs] == [("a", 3), ("b", 1)]


def token(token_id: str, digest: str, owner: str = "alice") -> Token:
    return Token(id=token_id, owner=owner, scopes=["user"], hash=digest)


async def test_token_hashes_are_unique_and_revocable(store: Store) -> None:
    await store.tokens.insert(token("k1", "h1"))
    with pytest.raises(DuplicateKeyError):
        await store.tokens.insert(token("k2", "h1"))
    with pytest.raises(DuplicateKeyError):
        await store.tokens.insert(token("k1", "h9"))
    await store.tokens.insert(token("k3", "h3", "bob"))
    found = await store.tokens.find_by_hash("h1")
    assert found is not None and found.id == "k1" and not found.revoked
    assert await store.tokens.find_by_hash("nope") is None
    assert await store.tokens.revoke("k1")
    assert await store.tokens.revoke("k1")  # matched: already revoked is still revoked
    assert not await store.tokens.revoke("missing")
    revoked = await store.tokens.get("k1")
    assert revoked is not None and revoked.revoked
    assert [t.id for t in await store.tokens.list_for_owner("bob")] == ["k3"]


def artifact(artifact_id: str, job_id: str, kind: str = "metrics", **fields: object) -> Artifact:
    return Artifact.model_validate(
        {
            "id": artifact_id,
            "owner": "alice",
            "task_id": "t1",
            "job_id": job_id,
            "kind": kind,
            "key": f"alice/t1/{artifact_id}",
            "size": 1,
            "sha256": "0" * 64,
            **fields,
        }
    )


async def test_artifacts_upsert_once_verify_and_page(store: Store) -> None:
    now = utcnow()
    await store.artifacts.upsert(artifact("a1", "p1.a1", created=now))
    await store.artifacts.upsert(artifact("a1", "p1.a1", kind="log"))  # the first stays
    await store.artifacts.upsert(artifact("a2", "p1.a2", "log", created=now + timedelta(seconds=1)))
    await store.artifacts.upsert(artifact("a3", "p10.a1", created=now + timedelta(seconds=2)))
    first = await store.artifacts.get("a1")
    assert first is not None and first.kind == "metrics"
    assert {a.id for a in await store.artifacts.list_unverified()} == {"a1", "a2", "a3"}
    await store.artifacts.set_verified("a1", True)
    await store.artifacts.set_verified("a2", False, "size differs")
    assert [a.id for a in await store.artifacts.list_unverified()] == ["a3"]
    bad = await store.artifacts.get("a2")
    assert bad is not None and bad.verified is False and bad.detail == "size differs"
    assert [a.id for a in await store.artifacts.list_for_task("t1")] == ["a1", "a2", "a3"]
    assert [a.id for a in await store.artifacts.list_for_point("t1", "p1")] == ["a1", "a2"]
    assert {a.id for a in await store.artifacts.list_for_jobs("t1", ["p1.a2", "p10.a1"])} == {
        "a2",
        "a3",
    }
    page = await store.artifacts.page("t1", after=None, kind=None, limit=2)
    assert [a.id for a in page] == ["a1", "a2"]
    page = await store.artifacts.page("t1", after="a2", kind=None, limit=2)
    assert [a.id for a in page] == ["a3"]
    logs = await store.artifacts.page("t1", after=None, kind="log", limit=10)
    assert [a.id for a in logs] == ["a2"]


# --- datasets, runtimes, steering, stats -------------------------------------------


def files(*names: str) -> list[DatasetFile]:
    return [DatasetFile(name=n, size=3, sha256="a" * 64) for n in names]


async def test_a_dataset_is_declared_made_ready_and_removed(store: Store) -> None:
    declared = await store.datasets.declare("alice", "train", files("x.csv"), part_size=1024)
    assert declared is not None and declared.status == "uploading" and declared.part_size == 1024
    redeclared = await store.datasets.declare("alice", "train", files("y.csv"))
    assert redeclared is not None and [f.name for f in redeclared.files] == ["y.csv"]
    assert await store.datasets.mark_ready("alice", "train")
    assert not await store.datasets.mark_ready("alice", "train")
    assert await store.datasets.declare("alice", "train", files("z.csv")) is None
    same = await store.datasets.declare("alice", "train", files("y.csv"))
    assert same is not None and same.status == "ready"
    await store.datasets.declare("alice", "a-first", files("x.csv"))
    await store.datasets.declare("bob", "train", files("x.csv"))
    assert [d.name for d in await store.datasets.list_for_owner("alice")] == ["a-first", "train"]
    stored = await store.datasets.get_for_owner("alice", "train")
    assert stored is not None and stored.status == "ready"
    assert await store.datasets.delete("alice", "train")
    assert not await store.datasets.delete("alice", "train")
    assert await store.datasets.get_for_owner("alice", "train") is None


async def test_run_times_accumulate_per_task_site_and_class(store: Store) -> None:
    await store.runtimes.observe("t1", "s", "cpu", 10.0)
    await store.runtimes.observe("t1", "s", "cpu", 20.0)
    await store.runtimes.observe("t1", "s", "gpu", -5.0)  # a clock step counts as 0
    await store.runtimes.observe("t2", "s", "cpu", 1.0)
    means = await store.runtimes.means(["t1", "t3"])
    assert means == {"t1": {("s", "cpu"): 15.0, ("s", "gpu"): 0.0}}


def capability(name: str, seen_ago: float, valid_for: float) -> SteeringCapability:
    seen = utcnow() - timedelta(seconds=seen_ago)
    return SteeringCapability(
        id=name,
        programs=True,
        images=False,
        images_reason="no runtime",
        runtime="bwrap",
        seen=seen,
        valid_until=seen + timedelta(seconds=valid_for),
    )


async def test_steering_capabilities_in_force(store: Store) -> None:
    assert await store.steering.in_force(utcnow()) == []
    await store.steering.record(capability("old", 8 * 86400, 60))
    await store.steering.record(capability("a", 120, 60))
    assert [c.id for c in await store.steering.in_force(utcnow())] == ["a"]  # the latest
    await store.steering.record(capability("b", 1, 60))
    assert [c.id for c in await store.steering.in_force(utcnow())] == ["b"]
    await store.steering.record(capability("c", 0, 60))
    assert sorted(c.id for c in await store.steering.in_force(utcnow())) == ["b", "c"]
    later = utcnow() + timedelta(days=30)
    assert [c.id for c in await store.steering.in_force(later)] == ["c"]  # "old" went


async def test_stats_count_whole_collections(store: Store) -> None:
    await store.tasks.insert(task("t1", "alice"))
    await store.tasks.insert(task("t2", "bob"))
    await store.tasks.insert(task("t3", "bob"))
    assert await store.tasks.transition("t1", TaskStatus.RUNNING)
    assert await store.stats.tasks_by_status() == {"running": 1, "submitted": 2}
    assert await store.stats.task_owners() == {"alice", "bob"}
    await store.jobs.insert(job("j1"))
    await leased(store, "j2")
    assert await store.stats.jobs_by_status(["defined", "leased", "running"]) == {
        "defined": 1,
        "leased": 1,
        "running": 0,
    }


# --- studies and curves ------------------------------------------------------------


def study(study_id: str = "st1", key: str = "k", owner: str = "alice") -> Study:
    return Study(id=study_id, owner=owner, title="t", key=key)


async def test_a_study_is_unique_per_owner_and_key(store: Store) -> None:
    assert await store.studies.insert(study())
    assert not await store.studies.insert(study("st2"))  # same owner and key
    assert not await store.studies.insert(study(key="other"))  # same id
    assert await store.studies.insert(study("st3", owner="bob"))
    assert await store.studies.get_for_owner("st1", "bob") is None
    found = await store.studies.get_for_owner("st1", "alice")
    assert found is not None and found.key == "k"
    assert await store.studies.with_idle_timeout() == []
    await store.studies.set_idle_timeout("st1", 30)
    await store.studies.set_idle_timeout("st3", 1.5)
    assert sorted(s.id for s in await store.studies.with_idle_timeout()) == ["st1", "st3"]
    await store.studies.mark_closed("st3")
    await store.studies.set_idle_timeout("st1", None)
    assert await store.studies.with_idle_timeout() == []


async def test_an_ask_makes_one_trial_and_a_tell_closes_it_once(store: Store) -> None:
    assert await store.studies.last_activity("st1") is None
    first = point(0, "st1", status=PointStatus.PENDING)
    assert await store.studies.insert_trial(first, "ask-1")
    assert not await store.studies.insert_trial(point(1, "st1", status="pending"), "ask-1")
    assert not await store.studies.insert_trial(first.model_copy(update={"id": "x"}), "ask-2")
    assert await store.points.insert(point(5, "st1"))  # batch points carry no ask id
    assert await store.points.insert(point(6, "st1"))
    found = await store.studies.trial_for_ask("st1", "ask-1")
    assert found is not None and found.id == first.id
    assert await store.studies.trial_for_ask("other", "ask-1") is None
    asked = await store.studies.last_activity("st1")
    assert asked is not None
    assert await store.studies.report(first.id, 1, 0.9)
    assert not await store.studies.report(first.id, 1, 0.1)  # the first value stays
    assert await store.studies.tell(first.id, 0.5)
    assert not await store.studies.tell(first.id, 0.4)
    assert not await store.studies.report(first.id, 2, 0.1)
    trials = await store.studies.trials("st1")
    assert [t.point.index for t in trials] == [0, 5, 6]
    assert trials[0].intermediate == {1: 0.9} and trials[0].point.loss == 0.5
    told = await store.studies.last_activity("st1")
    assert told is not None and told >= asked
    second = point(1, "st1", status=PointStatus.PENDING)
    assert await store.studies.insert_trial(second, "ask-2")
    assert await store.studies.fail(second.id, "x" * 3000)
    assert not await store.studies.fail(second.id, "again")
    failed = await store.points.get(second.id)
    assert failed is not None and failed.status is PointStatus.FAILED
    assert len(failed.last_error) == 2000


async def test_curves_are_written_only_by_the_owning_attempt(store: Store) -> None:
    assert await store.points.insert(point(0))
    p = await store.points.get("t1.main.0")
    assert p is not None
    assert not await store.curves.report(p.id, 1, 0.5, None)  # not pending yet
    owner = await store.points.start_attempt(p)
    assert owner is not None
    assert not await store.curves.report(p.id, 1, 0.5, "someone.else")
    assert await store.curves.report(p.id, 1, 0.5, owner)
    assert not await store.curves.report(p.id, 1, 0.4, owner)  # the first value stays
    assert await store.curves.report(p.id, 3, 0.3, owner)
    await store.curves.remember(p.id, {"rung": 1}, "someone.else")
    await store.curves.remember(p.id, {"rung": 2}, owner)
    [trial] = await store.curves.trials("t1", "main")
    assert trial.intermediate == {1: 0.5, 3: 0.3} and trial.pruner_attrs == {"rung": 2}
    assert not await store.curves.prune(p.id, 3, 0.3, "someone.else")
    assert await store.curves.prune(p.id, 3, 0.3, owner)
    assert not await store.curves.prune(p.id, 3, 0.3, owner)
    assert not await store.points.record_result(p.id, owner, 0.1)  # pruned counts
    pruned = await store.points.get(p.id)
    assert pruned is not None and pruned.status is PointStatus.EVALUATED
    assert (pruned.loss, pruned.pruned_step, pruned.counted_job_id) == (0.3, 3, owner)


async def test_a_named_memory_store_is_shared_in_the_process() -> None:
    first = open_store("memory://shared-by-name")
    await first.tasks.insert(task("named"))
    assert await open_store("memory://shared-by-name").tasks.get("named") is not None
    assert await open_store("memory://").tasks.get("named") is None
    with pytest.raises(ValueError, match="unsupported store URL scheme"):
        open_store("postgres://x")


# --- pages and the job counter (merged from main's paging and job-count work) ------


def _keys(points: list[Point]) -> list[str]:
    return [p.id for p in points]


async def page_all(store: Store, task_id: str, **kwargs: object) -> list[list[str]]:
    """Every page of the task's points, three at a time, following the cursors."""
    order = kwargs.pop("order", PointOrder.INDEX)
    descending = bool(kwargs.pop("descending", False))
    pages: list[list[str]] = []
    after: PageKey | None = None
    while True:
        request = PageRequest(limit=3, after=after, descending=descending)
        found = await store.points.page_for_task(task_id, request, order=order, **kwargs)  # type: ignore[arg-type]
        if not found:
            return pages
        pages.append(_keys(found))
        last = found[-1]
        value = last.index if order is PointOrder.INDEX else last.loss
        assert isinstance(value, int | float)
        after = PageKey(value=value, id=last.id)


async def test_point_pages_follow_their_cursors_in_every_order(store: Store) -> None:
    for i in range(7):
        loss: object = [1.0, 2.0] if i == 6 else (None if i == 5 else float(10 - i) % 4)
        status = PointStatus.EVALUATED if loss is not None else PointStatus.UNEVALUATED
        assert await store.points.insert(point(i, status=status, loss=loss))
    assert await store.points.insert(point(0, segment="b"))
    assert await store.points.insert(point(0, task_id="t2"))
    ids = [f"t1.main.{i}" for i in range(7)]
    by_index = await page_all(store, "t1", segment="main")
    assert by_index == [ids[0:3], ids[3:6], ids[6:7]]
    # index ties across segments are broken by id
    assert [p for page in await page_all(store, "t1") for p in page][:2] == [
        "t1.b.0",
        "t1.main.0",
    ]
    backwards = await page_all(store, "t1", segment="main", descending=True)
    assert [p for page in backwards for p in page] == ids[::-1]
    by_loss = [p for page in await page_all(store, "t1", order=PointOrder.LOSS) for p in page]
    losses = {i: float(10 - i) % 4 for i in range(5)}  # 5: no loss, 6: a list
    assert by_loss == [
        f"t1.main.{i}" for i in sorted(losses, key=lambda i: (losses[i], f"t1.main.{i}"))
    ]
    unevaluated = await page_all(store, "t1", status=PointStatus.UNEVALUATED, segment="main")
    assert unevaluated == [["t1.main.5"]]


async def test_job_pages_are_oldest_first_with_filters(store: Store) -> None:
    past = utcnow() - timedelta(minutes=1)
    for i in range(5):
        await store.jobs.insert(job(f"j{i}", created=past + timedelta(seconds=i)))
    await store.jobs.insert(job("x", task_id="t2", created=past))
    assert await store.jobs.assign("j1", "s1")
    assert await store.jobs.assign("j3", "s1")
    first = await store.jobs.page_for_task("t1", PageRequest(limit=2))
    assert [j.id for j in first] == ["j0", "j1"]
    after = PageKey(value=first[-1].created, id=first[-1].id)
    rest = await store.jobs.page_for_task("t1", PageRequest(limit=10, after=after))
    assert [j.id for j in rest] == ["j2", "j3", "j4"]
    at_s1 = await store.jobs.page_for_task("t1", PageRequest(), site="s1")
    assert [j.id for j in at_s1] == ["j1", "j3"]
    defined = await store.jobs.page_for_task(
        "t1", PageRequest(descending=True), status=JobStatus.DEFINED
    )
    assert [j.id for j in defined] == ["j4", "j2", "j0"]


async def test_a_task_counts_its_jobs_in_a_field(store: Store) -> None:
    await store.tasks.insert(task())
    stored = await store.tasks.get("t1")
    assert stored is not None and stored.jobs_counted is None
    await store.tasks.set_jobs("t1", 0)  # the job builder counts first (None: never counted)
    await store.tasks.add_jobs("t1", 1)
    await store.tasks.add_jobs("t1", 1)
    await store.tasks.add_jobs("t1", -1)
    stored = await store.tasks.get("t1")
    assert stored is not None and stored.jobs_counted == 1
    await store.tasks.set_jobs("t1", 5)
    await store.tasks.set_jobs("t1", 5)
    stored = await store.tasks.get("t1")
    assert stored is not None and stored.jobs_counted == 5


async def test_a_task_build_lock_has_one_holder_until_it_runs_out(store: Store) -> None:
    await store.tasks.insert(task())
    now = utcnow()
    soon = now + timedelta(seconds=30)
    held = await store.tasks.claim_build("t1", "a", now, soon)
    assert held is not None and held.id == "t1"
    assert await store.tasks.claim_build("t1", "b", now, soon) is None
    assert await store.tasks.claim_build("t1", "a", now, soon) is not None  # renewal
    later = soon + timedelta(seconds=1)
    assert await store.tasks.claim_build("t1", "b", later, later + timedelta(seconds=30))
    await store.tasks.release_build("t1", "a")  # not a's: unchanged
    assert await store.tasks.claim_build("t1", "c", later, later) is None
    await store.tasks.release_build("t1", "b")
    assert await store.tasks.claim_build("t1", "c", later, later) is not None
    assert await store.tasks.claim_build("missing", "c", later, later) is None


async def test_results_keep_their_metrics_and_evaluated_losses_come_in_order(
    store: Store,
) -> None:
    for index, loss in ((0, 0.5), (1, 0.2), (2, 0.9)):
        assert await store.points.insert(point(index))
        p = await store.points.get(f"t1.main.{index}")
        assert p is not None
        job = await store.points.start_attempt(p)
        assert job is not None
        assert await store.points.record_result(p.id, job, loss, {"acc": 1 - loss, "s": 3.0})
    assert await store.points.insert(point(3))  # not evaluated: not listed
    first = await store.points.get("t1.main.0")
    assert first is not None and first.metrics == {"acc": 0.5, "s": 3.0}
    assert await store.points.evaluated_losses("t1") == [
        ("t1.main.0", 0.5),
        ("t1.main.1", 0.2),
        ("t1.main.2", 0.9),
    ]
    assert await store.summaries.by_segment("t1", ["main"]) == {
        "main": {"evaluated": 3, "unevaluated": 1}
    }


async def test_jobs_are_read_many_at_once_and_views_are_replaced_whole(store: Store) -> None:
    for job_id in ("j1", "j2", "j3"):
        assert await store.jobs.insert(job(job_id))
    found = await store.jobs.get_many(["j3", "nope", "j1", "j1"])
    assert sorted(j.id for j in found) == ["j1", "j3"]
    assert await store.jobs.get_many([]) == []
    assert await store.views.get("t1") is None
    await store.views.put("t1", {"version": 1}, {"counts": {"evaluated": 2}})
    await store.views.put("t1", {"version": 2}, {"names": ["x"]})
    assert await store.views.get("t1") == {"_id": "t1", "stamp": {"version": 2}, "names": ["x"]}


async def test_snapshot_parts_are_replaced_whole_and_read_per_task(store: Store) -> None:
    from shared.store.snapshots import SnapshotPart

    assert await store.snapshots.parts("t1") == []
    assert await store.snapshots.part("t1", "main", 0) is None
    first = SnapshotPart("t1", "main", 1, upto=7000, open=[6001], data=b"\x00old")
    await store.snapshots.put(first)
    await store.snapshots.put(SnapshotPart("t1", "main", 0, upto=5000, data=b"zero"))
    await store.snapshots.put(SnapshotPart("t1", "b", 0, upto=3, open=[1, 2], data=b"b"))
    await store.snapshots.put(SnapshotPart("t2", "main", 0, upto=9, data=b"other"))
    newer = SnapshotPart("t1", "main", 1, upto=8000, open=[], data=b"\x00\xffnew")
    await store.snapshots.put(newer)
    parts = await store.snapshots.parts("t1")
    assert [(p.segment, p.part, p.upto, p.open, p.data) for p in parts] == [
        ("b", 0, 3, [1, 2], b"b"),
        ("main", 0, 5000, [], b"zero"),
        ("main", 1, 8000, [], b"\x00\xffnew"),
    ]
    heads = await store.snapshots.heads("t1")
    assert [(p.segment, p.part, p.upto, p.open, p.data) for p in heads] == [
        ("b", 0, 3, [1, 2], b""),
        ("main", 0, 5000, [], b""),
        ("main", 1, 8000, [], b""),
    ]
    assert await store.snapshots.part("t1", "main", 1) == newer
    await store.snapshots.drop("t1")
    assert await store.snapshots.parts("t1") == []
    assert [p.data for p in await store.snapshots.parts("t2")] == [b"other"]


async def test_a_segments_front_follows_its_results_whoever_refreshed_first(
    store: Store,
) -> None:
    directions: list[Direction] = ["minimize", "maximize"]
    losses = [[3.0, 1.0], [1.0, 0.0], [2.0, 2.0], [4.0, 5.0], [2.0, 2.0], [0.5, -1.0], [9, 9]]

    async def evaluate(index: int) -> None:
        p = await store.points.get(f"t1.main.{index}")
        assert p is not None
        job = await store.points.start_attempt(p)
        assert job is not None
        assert await store.points.record_result(p.id, job, losses[index], {})

    def expected(upto: int) -> list[tuple[str, list[float], dict[str, object]]]:
        pairs = [(i, losses[i]) for i in range(upto)]
        return [
            (f"t1.main.{i}", [float(v) for v in losses[i]], {"x": i})
            for i in pareto_front(pairs, directions)
        ]

    for index in range(len(losses)):  # indices are given out in order, then evaluated
        assert await store.points.insert(point(index))
    for index in range(3):
        await evaluate(index)
    # A refresh that keeps no front (the job builder of a task asked before any view)...
    assert (await store.summaries.counts("t1", "main"))["evaluated"] == 3
    # ...and the first ask for the front still sees every closed point.
    assert await store.summaries.front("t1", "main", directions) == expected(3)
    for index in range(3, 7):  # open points closing one by one
        await evaluate(index)
        await store.summaries.counts("t1", "main")  # folded with the kept directions
    assert await store.summaries.front("t1", "main", directions) == expected(7)
    assert await store.summaries.front("t1", "other", directions) == []
