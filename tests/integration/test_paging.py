"""Paginated listings of a task's points and jobs: every record once, in order, however
the pages are cut and while records are added; cursors validated like any input; the
CLI reads pages as it prints (central services on SecantusDB and the memory bus)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.central import Central, central, file_artifacts
from tests.integration.test_online import steering_serves
from tests.integration.test_progress import ask_and_tell, bearer, cli, open_study
from tests.integration.test_segments import run_to_end
from tests.integration.test_segments import submit as submit_segmented

pytestmark = [pytest.mark.mongo]


@pytest.fixture
async def system(mongo_db_url: str, bus_prefix: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix=bus_prefix,
        artifacts_url=file_artifacts(tmp_path),
        home=tmp_path,
    ) as c:
        await steering_serves(c)
        yield c


@pytest.fixture
async def http(system: Central) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.api_url, timeout=30) as client:
        yield client


async def all_pages(
    http: httpx.AsyncClient, token: str, path: str, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Follow the Link headers from the first page to the last."""
    items: list[dict[str, Any]] = []
    url: str | None = path
    pages = 0
    query: dict[str, Any] | None = params
    while url is not None:
        reply = await http.get(url, params=query, headers=bearer(token))
        assert reply.status_code == 200, reply.text
        items.extend(reply.json())
        pages += 1
        link = reply.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
        query = None  # the next link carries every parameter
    return items, pages


async def test_points_page_by_index_and_by_loss_each_point_once(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    study = await open_study(http, user)
    await ask_and_tell(http, user, study["id"], 23)
    path = f"/api/v1/tasks/{study['id']}/points"

    by_index, pages = await all_pages(http, user, path, limit=5)
    assert pages == 5  # 5+5+5+5+3
    assert [p["index"] for p in by_index] == sorted(p["index"] for p in by_index)
    assert len({p["id"] for p in by_index}) == 23

    by_loss, _ = await all_pages(http, user, path, limit=4, order="loss")
    losses = [p["loss"] for p in by_loss]
    assert len(losses) == 23 and losses == sorted(losses)
    worst_first, _ = await all_pages(http, user, path, limit=6, order="loss", descending="true")
    assert [p["id"] for p in worst_first] == [p["id"] for p in reversed(by_loss)]

    evaluated, _ = await all_pages(http, user, path, limit=10, status="evaluated")
    assert len(evaluated) == 23


async def test_points_added_while_paging_are_neither_skipped_nor_repeated(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    study = await open_study(http, user)
    await ask_and_tell(http, user, study["id"], 6)
    path = f"/api/v1/tasks/{study['id']}/points"
    first = await http.get(path, params={"limit": 4}, headers=bearer(user))
    cursor = first.headers["X-Next-Cursor"]
    await ask_and_tell(http, user, study["id"], 5)  # new points land after the cursor
    rest, _ = await all_pages(http, user, path, limit=4, cursor=cursor)
    seen = [p["id"] for p in first.json()] + [p["id"] for p in rest]
    assert len(seen) == len(set(seen)) == 11


async def test_a_bad_cursor_is_a_422_naming_it_and_others_tasks_stay_hidden(
    system: Central, http: httpx.AsyncClient
) -> None:
    alice = await system.token("alice", ["user"])
    bob = await system.token("bob", ["user"])
    study = await open_study(http, alice)
    await ask_and_tell(http, alice, study["id"], 3)
    path = f"/api/v1/tasks/{study['id']}/points"
    by_loss = await http.get(path, params={"limit": 1, "order": "loss"}, headers=bearer(alice))
    loss_cursor = by_loss.headers["X-Next-Cursor"]
    forged = base64.urlsafe_b64encode(b'{"f":"index","k":"int","v":1e400,"id":"x"}').decode()
    for cursor in ("%%%", "bm90IGpzb24", loss_cursor, forged, "A" * 2000):
        reply = await http.get(path, params={"cursor": cursor}, headers=bearer(alice))
        assert reply.status_code == 422, reply.text
        assert "cursor" in reply.text
    for params in ({"limit": 0}, {"limit": 10**6}, {"order": "params"}, {"status": "nope"}):
        reply = await http.get(path, params=params, headers=bearer(alice))
        assert reply.status_code == 422, (params, reply.text)
    assert (await http.get(path, headers=bearer(bob))).status_code == 404
    jobs = f"/api/v1/tasks/{study['id']}/jobs"
    assert (await http.get(jobs, headers=bearer(bob))).status_code == 404


async def test_jobs_page_oldest_first_with_filters(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    reply = await submit_segmented(http, user, {"steering": {"algorithm": "random", "seed": 3}}, {})
    assert reply.status_code == 201, reply.text
    task_id = reply.json()["id"]
    await run_to_end(system, http, user, task_id)
    path = f"/api/v1/tasks/{task_id}/jobs"
    whole = (await http.get(path, params={"limit": 1000}, headers=bearer(user))).json()
    paged, pages = await all_pages(http, user, path, limit=2)
    assert [j["id"] for j in paged] == [j["id"] for j in whole] and pages >= 3
    assert [j["created"] for j in paged] == sorted(j["created"] for j in paged)
    at_site, _ = await all_pages(http, user, path, limit=2, site="siteA", status="finished")
    assert at_site and all(j["site"] == "siteA" for j in at_site)
    assert {j["id"] for j in at_site} == {j["id"] for j in whole if j["status"] == "finished"}
    elsewhere, _ = await all_pages(http, user, path, site="nowhere")
    assert elsewhere == []


async def test_the_cli_lists_points_and_jobs_a_page_at_a_time(
    system: Central, http: httpx.AsyncClient
) -> None:
    user = await system.token("alice", ["user"])
    study = await open_study(http, user)
    await ask_and_tell(http, user, study["id"], 12)
    best = (
        await http.get(
            f"/api/v1/tasks/{study['id']}/points",
            params={"order": "loss", "limit": 3},
            headers=bearer(user),
        )
    ).json()
    out = await cli(system, user, "points", study["id"], "--order", "loss", "--limit", "3")
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for line, point in zip(lines, best, strict=True):
        assert line.split()[0] == f"{point['segment']}/{point['index']}"
        assert "evaluated" in line
    out = await cli(system, user, "points", study["id"], "--json")
    assert len(out.strip().splitlines()) == 12
    out = await cli(system, user, "jobs", study["id"])
    assert out.strip() == ""  # an online study has no jobs
