"""The per-process cache of what never changes in tasks and segments."""

from __future__ import annotations

from shared.domain.models import Segment, Task, TaskStatus
from shared.domain.taskconfig import TaskConfig
from shared.store.constants import Constants


class Tasks:
    def __init__(self) -> None:
        self.rows: dict[str, Task] = {}
        self.reads = 0

    async def get(self, id_: str) -> Task | None:
        self.reads += 1
        return self.rows.get(id_)


class Segments:
    def __init__(self) -> None:
        self.rows: dict[str, list[Segment]] = {}
        self.reads = 0

    async def list_for_task(self, task_id: str) -> list[Segment]:
        self.reads += 1
        return list(self.rows.get(task_id, []))


def task(task_id: str) -> Task:
    return Task(
        id=task_id, owner="alice", config=TaskConfig(evaluationExec="run"), files={"a": "b"}
    )


def segment(task_id: str, name: str, index: int) -> Segment:
    return Segment(id=f"{task_id}.{name}", task_id=task_id, name=name, index=index, search_space={})


async def test_a_task_is_read_once_and_a_miss_is_not_remembered() -> None:
    tasks, segments = Tasks(), Segments()
    constants = Constants(tasks, segments)
    assert await constants.task("t1") is None
    tasks.rows["t1"] = task("t1")
    for _ in range(5):
        found = await constants.task("t1")
        assert found is not None and found.owner == "alice" and found.files == {"a": "b"}
    assert tasks.reads == 2  # the miss, then one read for five lookups
    tasks.rows["t1"] = tasks.rows["t1"].model_copy(update={"status": TaskStatus.DONE})
    assert not hasattr(await constants.task("t1"), "status")  # what changes is never served


async def test_segments_come_in_index_order_and_an_empty_list_is_read_again() -> None:
    tasks, segments = Tasks(), Segments()
    constants = Constants(tasks, segments)
    assert await constants.segments("t1") == ()
    segments.rows["t1"] = [segment("t1", "b", 1), segment("t1", "a", 0)]
    assert [s.name for s in await constants.segments("t1")] == ["a", "b"]
    assert [s.name for s in await constants.segments("t1")] == ["a", "b"]
    assert segments.reads == 2


async def test_the_cache_is_bounded_least_recently_used_out() -> None:
    tasks, segments = Tasks(), Segments()
    constants = Constants(tasks, segments, max_tasks=2)
    for name in ("t1", "t2", "t3"):
        tasks.rows[name] = task(name)
    await constants.task("t1")
    await constants.task("t2")
    await constants.task("t1")  # t2 is now the least recently used
    await constants.task("t3")
    reads = tasks.reads
    await constants.task("t1")
    assert tasks.reads == reads
    await constants.task("t2")
    assert tasks.reads == reads + 1
