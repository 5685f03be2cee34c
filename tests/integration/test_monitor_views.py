"""A finished task's first render after a monitor restart: answered from the view the
previous monitor stored, without reading the task's points (SecantusDB, real services)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.seed import seed_task
from tests.integration.central import Central, central, file_artifacts
from tests.integration.monitor_support import monitor_state

pytestmark = [pytest.mark.mongo, pytest.mark.timeout(180)]

FIRST_RENDER = ("", "/history", "/points?sort=index&segment=main&limit=50")


@contextlib.asynccontextmanager
async def monitor(mongo_db_url: str, tmp_path: Path) -> AsyncIterator[Central]:
    """A fresh set of services (a fresh monitor, its cache empty) on the same database."""
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix="",
        artifacts_url=file_artifacts(tmp_path),
    ) as running:
        yield running


async def get(system: Central, token: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=system.monitor_url, timeout=120) as http:
        reply = await http.get(f"/monitor/api/{path}", headers={"Authorization": f"Bearer {token}"})
        reply.raise_for_status()
        return reply.json()


async def test_a_restarted_monitor_draws_a_finished_task_from_its_stored_view(
    mongo_db_url: str, tmp_path: Path
) -> None:
    async with monitor(mongo_db_url, tmp_path) as first:
        token = await first.token("alice", ["user"])
        task_id = await seed_task(first.ctx.store, "alice", 3000, curves=10, pruned=3, failed=4)
        base = f"tasks/{task_id}"
        loaded = [await get(first, token, base + path) for path in FIRST_RENDER]
        second_page = await get(
            first,
            token,
            f"{base}/points?sort=index&segment=main&limit=50&cursor=" + loaded[2]["next_cursor"],
        )
        assert monitor_state(first).cache.loads == 1

    async with monitor(mongo_db_url, tmp_path) as second:
        state = monitor_state(second)
        answered = [await get(second, token, base + path) for path in FIRST_RENDER]
        assert state.cache.loads == 0, "the first render read the task's points"
        # the same answers; the page's cursor may name its last row differently
        assert [a.pop("next_cursor", None) is None for a in answered] == [
            b.pop("next_cursor", None) is None for b in loaded
        ]
        assert answered == loaded
        detail = answered[0]
        assert detail["progress"]["evaluated"] == 2996 and detail["health"] == "warning"
        assert len(answered[1]["x"]) < answered[1]["total"] == 2996
        # the next page (and anything else) comes from the loaded points, in sequence
        head = await get(second, token, base + FIRST_RENDER[2])
        assert state.cache.loads == 0
        cursor = head["next_cursor"]
        resumed = await get(
            second, token, f"{base}/points?sort=index&segment=main&limit=50&cursor={cursor}"
        )
        assert resumed == second_page
        assert [r["index"] for r in resumed["rows"]] == list(range(50, 100))
        assert state.cache.loads == 1


async def test_a_task_changed_since_its_view_was_stored_is_read_again(
    mongo_db_url: str, tmp_path: Path
) -> None:
    async with monitor(mongo_db_url, tmp_path) as first:
        token = await first.token("alice", ["user"])
        task_id = await seed_task(first.ctx.store, "alice", 500)
        await get(first, token, f"tasks/{task_id}")
        assert await first.ctx.store.views.get(task_id) is not None
        # a new stamp (as a status transition gives): the stored view no longer counts
        await first.ctx.store.tasks.col.update_one({"_id": task_id}, {"$inc": {"version": 1}})

    async with monitor(mongo_db_url, tmp_path) as second:
        await get(second, token, f"tasks/{task_id}/history")
        assert monitor_state(second).cache.loads == 1


async def test_an_active_task_keeps_no_view(mongo_db_url: str, tmp_path: Path) -> None:
    async with monitor(mongo_db_url, tmp_path) as system:
        token = await system.token("alice", ["user"])
        task_id = await seed_task(system.ctx.store, "alice", 200)
        await system.ctx.store.tasks.col.update_one(
            {"_id": task_id}, {"$set": {"status": "running"}}
        )
        await get(system, token, f"tasks/{task_id}/history")
        assert monitor_state(system).cache.loads == 1
        assert await system.ctx.store.views.get(task_id) is None
