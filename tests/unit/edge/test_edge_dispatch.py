"""Late binding on the harvester's side: the dispatch rules, and the inbox renames that
decide who runs a job."""

from __future__ import annotations

import threading
from pathlib import Path

from edge.harvester.dispatch import Plan, WorkerView, plan, to_withdraw
from edge.workerproto import WorkerPaths, claim, dispatch, entries, unclaim, withdraw


def decide(workers: list[WorkerView], waiting: list[str]) -> Plan:
    return plan(
        workers, waiting, queue_per_slot=1, max_slots=24, slots_per_worker=6, release_after=60
    )


def test_jobs_go_to_idle_slots_first_and_a_live_worker_before_a_queued_one() -> None:
    live = WorkerView("live", slots=2, phase="live", running=1)
    queued = WorkerView("queued", slots=2, phase="pending")
    result = plan(
        [queued, live],
        ["a", "b", "c"],
        queue_per_slot=1,
        max_slots=4,
        slots_per_worker=2,
        release_after=60,
    )
    # Both have idle slots: "queued" has 2, "live" 1; ties go to the running worker.
    assert result.assign == [("a", "queued"), ("b", "live"), ("c", "queued")]
    assert result.submit == 0
    assert result.release == []


def test_a_worker_takes_at_most_its_slots_plus_the_queue_depth() -> None:
    full = WorkerView("w", slots=2, phase="live", running=2, queued=("x", "y"))
    result = plan(
        [full], ["a"], queue_per_slot=1, max_slots=2, slots_per_worker=2, release_after=60
    )
    assert result.assign == []
    assert result.submit == 0  # the site's 2 GPU slots are all held already


def test_workers_are_submitted_for_what_no_worker_can_take_within_the_site_slots() -> None:
    waiting = [f"j{i}" for i in range(30)]
    result = plan([], waiting, queue_per_slot=1, max_slots=12, slots_per_worker=6, release_after=0)
    assert result.submit == 2  # 30 jobs want 3 workers of 6 slots (+6 queued), 12 slots allow 2
    one = plan([], ["a"], queue_per_slot=0, max_slots=12, slots_per_worker=6, release_after=0)
    assert one.submit == 1


def test_draining_ended_and_released_workers_give_their_inbox_back() -> None:
    workers = [
        WorkerView("live", 2, "live", queued=("a",)),
        WorkerView("draining", 2, "draining", running=1, queued=("b",)),
        WorkerView("ended", 2, "ended", queued=("c", "d")),
        WorkerView("released", 2, "pending", released=True, queued=("e",)),
    ]
    assert to_withdraw(workers) == [
        ("b", "draining"),
        ("c", "ended"),
        ("d", "ended"),
        ("e", "released"),
    ]
    result = plan(
        workers, ["f"], queue_per_slot=0, max_slots=8, slots_per_worker=2, release_after=0
    )
    assert result.assign == [("f", "live")]


def test_allocations_with_nothing_to_run_are_released_only_when_no_job_waits() -> None:
    queued = WorkerView("queued", 6, "pending")
    fresh_idle = WorkerView("fresh", 6, "live", idle_for=5)
    long_idle = WorkerView("old", 6, "live", idle_for=120)
    busy = WorkerView("busy", 6, "live", running=1, idle_for=500)
    workers = [queued, fresh_idle, long_idle, busy]
    assert decide(workers, []).release == ["queued", "old"]
    # A new job goes to a running worker with all slots idle; the others stay released.
    one = decide(workers, ["a"])
    assert one.assign == [("a", "fresh")]
    assert one.release == ["queued", "old"]
    # While a job waits for a worker to be submitted, nothing is released.
    full = [WorkerView("busy", 6, "live", running=6, queued=tuple("abcdef")), queued]
    many = decide(full, [f"j{i}" for i in range(13)])
    assert [w for _, w in many.assign] == ["queued"] * 12
    assert many.submit == 1
    assert many.release == []


def test_a_dispatched_entry_is_claimed_by_exactly_one_of_many_racers(tmp_path: Path) -> None:
    worker = WorkerPaths(tmp_path / "workers" / "w-1")
    worker.make()
    dispatch(worker, "job-1")
    assert entries(worker.inbox) == ["job-1"]
    wins: list[str] = []
    barrier = threading.Barrier(9)

    def racer(name: str) -> None:
        barrier.wait()
        if name == "harvester":
            if withdraw(worker, "job-1"):
                wins.append(name)
        elif claim(worker, "job-1"):
            wins.append(name)

    threads = [threading.Thread(target=racer, args=(f"slot-{i}",)) for i in range(8)]
    threads.append(threading.Thread(target=racer, args=("harvester",)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    held = entries(worker.claimed) + entries(worker.withdrawn)
    assert held == ["job-1"]
    assert entries(worker.inbox) == []


def test_withdraw_fails_once_claimed_and_an_unclaimed_entry_goes_back(tmp_path: Path) -> None:
    worker = WorkerPaths(tmp_path / "w")
    worker.make()
    dispatch(worker, "job-1")
    assert claim(worker, "job-1")
    assert not withdraw(worker, "job-1")
    assert not claim(worker, "job-1")
    unclaim(worker, "job-1")
    assert entries(worker.inbox) == ["job-1"]
    assert withdraw(worker, "job-1")
    assert not claim(worker, "job-1")
