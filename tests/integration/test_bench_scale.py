"""The scale benchmark's modes (tests/bench/scale.py) in a tiny form, so that none can
rot: a pre-seeded task's growth, the batch path at parallelism 8, several tasks at once
and several online studies with several clients, on SecantusDB at the product defaults."""

from __future__ import annotations

import pytest

from shared.domain.models import TaskStatus
from shared.store import open_store
from tests.bench import scale

pytestmark = [pytest.mark.mongo]


async def test_a_seeded_history_is_what_the_services_would_have_left(store_url: str) -> None:
    store = open_store(store_url)
    await store.start()
    try:
        task_id = await scale.seed_history(store, "bench", 12, 3)
        task = await store.tasks.get(task_id)
        assert task is not None and task.status is TaskStatus.RUNNING
        assert task.jobs_counted == 12 and task.config.maxPoints == 15
        assert task.best_loss is not None and task.best_point_id is not None
        assert await store.points.count_by_status(task_id) == {"evaluated": 12}
        assert await store.summaries.counts(task_id, "main") == {"evaluated": 12}
        assert await store.jobs.count_by_status(task_id) == {"finished": 12}
        assert await store.jobs.count_unapplied(task_id) == 0
    finally:
        await store.close()


async def test_growth_runs_new_points_through_a_seeded_task(mongo_url: str) -> None:
    lines = await scale.growth(mongo_url, [10, 40], 3)
    assert [line["points_held"] for line in lines] == [10, 40]
    for line in lines:
        assert line["points"] == 3 and line["warmup_points"] == scale.WARMUP
        assert line["ms_per_new_point"] > 0 and line["db_commands_per_point"] > 0, line
        assert sum(line["db_commands_per_point_by_kind"].values()) > 0
        assert sum(line["db_ms_per_point_by_kind"].values()) > 0
    ratio = scale.growth_ratio(lines)
    assert ratio is not None and ratio["target"] == "<= 1.2"
    expected = lines[1]["ms_per_new_point"] / lines[0]["ms_per_new_point"]
    assert ratio["ratio"] == round(expected, 2)


async def test_parallel_batch_and_concurrent_tasks(mongo_url: str) -> None:
    p8 = await scale.p8(mongo_url, 16, parallel=4)
    assert p8["points"] == 16 and p8["nParallelEvaluation"] == 4
    assert p8["points_per_s"] > 0 and p8["db_commands_per_point"] > 0
    assert 1 <= p8["most_jobs_at_once"] <= 4  # never more than nParallelEvaluation
    tasks = await scale.many_tasks(mongo_url, 3, 3)
    assert tasks["tasks"] == 3 and tasks["points_per_s"] > 0
    assert tasks["result_to_leasable_samples"] == 3 * 2  # each task's result, then lease
    assert 0 < tasks["result_to_leasable_p50_ms"] <= tasks["result_to_leasable_p99_ms"]


async def test_online_studies_with_concurrent_clients(mongo_url: str) -> None:
    line = await scale.online(mongo_url, 2, 3, 2)
    assert (line["studies"], line["clients_per_study"], line["pairs"]) == (2, 3, 12)
    assert line["pairs_failed"] == {} and line["asks_refused_503"] == 0
    assert line["pairs_per_s"] > 0 and line["pair_p50_ms"] <= line["pair_p99_ms"]
    assert line["db_commands_per_pair"] > 0
