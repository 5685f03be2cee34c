"""The dashboard in Debian's chromium against the real services.

Each test loads pages as a user would (token in the URL fragment), with every address
but 127.0.0.1 cut off, and keeps a screenshot of what it saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Route

from tests.browser.conftest import OfflinePage
from tests.browser.seed import seed_task
from tests.integration.central import Central, FakeSite, central, file_artifacts
from tests.integration.monitor_support import monitor_state
from tests.integration.test_monitor import submission, user

pytestmark = [pytest.mark.mongo, pytest.mark.slow, pytest.mark.timeout(300)]

CHARTS = ("history", "parallel", "slice", "importance", "curves")


@pytest.fixture
async def system(mongo_db_url: str, tmp_path: Path) -> AsyncIterator[Central]:
    async with central(
        mongo_url=mongo_db_url,
        bus_url="memory://",
        bus_prefix="",
        artifacts_url=file_artifacts(tmp_path),
        monitor_refresh_seconds=0.2,
    ) as running:
        yield running


async def sign_in(offline: OfflinePage, system: Central, token: str) -> None:
    await offline.page.goto(f"{system.monitor_url}/#token={token}")
    await offline.page.wait_for_selector("#view-list:not([hidden])")


async def open_task(offline: OfflinePage, system: Central, task_id: str) -> None:
    await offline.page.goto(f"{system.monitor_url}/#/task/{task_id}")
    for chart in CHARTS:
        await offline.page.wait_for_function(
            f"() => document.getElementById('{chart}').dataset.points !== undefined"
        )


async def drawn(offline: OfflinePage, chart: str) -> dict[str, Any]:
    """What Plotly holds in the chart: points per trace, and the div's data- marks."""
    found: dict[str, Any] = await offline.page.evaluate(
        """(id) => { const div = document.getElementById(id);
             return { marks: {...div.dataset}, traces: (div.data || []).map(t =>
               ({ type: t.type, name: t.name || '', n: t.type === 'parcoords'
                  ? t.dimensions[0].values.length : (t.x || []).length })) }; }""",
        chart,
    )
    return found


async def api_json(system: Central, token: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=system.monitor_url, timeout=120) as http:
        reply = await http.get(f"/monitor/api/{path}", headers=user(token))
        reply.raise_for_status()
        return reply.json()


async def test_task_page_charts_hold_the_expected_points(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    token = await system.token("alice", ["user"])
    task_id = await seed_task(
        system.ctx.store, "alice", 5000, name="5k points", curves=40, pruned=10, failed=5
    )
    await sign_in(offline, system, token)
    await offline.page.screenshot(path=screenshots / "list.png")
    await open_task(offline, system, task_id)
    await offline.page.wait_for_function(
        "() => document.getElementById('importance').dataset.points === '4'"
    )
    await offline.page.screenshot(path=screenshots / "task.png", full_page=True)

    history = await api_json(system, token, f"tasks/{task_id}/history")
    chart = await drawn(offline, "history")
    markers = sum(t["n"] for t in chart["traces"] if t["name"] in ("evaluated", "pruned"))
    assert markers == len(history["x"]) == int(chart["marks"]["points"])
    assert history["total"] == 4995 and len(history["x"]) <= 2000 + len(history["best_x"])
    best = next(t for t in chart["traces"] if t["name"] == "best so far")
    assert best["n"] == len(history["best_x"])
    assert [t["n"] for t in (await drawn(offline, "parallel"))["traces"]] == [1000]
    assert [t["n"] for t in (await drawn(offline, "slice"))["traces"]] == [2000]
    curves = await drawn(offline, "curves")
    assert curves["marks"] == {"points": "40", "pruned": "10", "total": "40"}
    pruned_marks = next(t for t in curves["traces"] if t["name"] == "pruned")
    assert pruned_marks["n"] == 10
    assert (await drawn(offline, "importance"))["traces"][0]["n"] == 4
    await offline.page.evaluate(
        "Plotly.relayout(document.getElementById('history'), {'xaxis.range': [1000, 1999]})"
    )
    await offline.page.wait_for_function(  # the zoomed window is re-cut: every point in it
        "() => document.getElementById('history').dataset.points === '1000'"
    )
    table = offline.page.locator("#points-table")
    assert await table.get_attribute("data-total") == "5000"
    assert await table.locator("tbody tr").count() == 50
    assert offline.outside == [] and offline.errors == []


async def test_the_table_sorts_filters_and_pages_on_the_server(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    token = await system.token("alice", ["user"])
    task_id = await seed_task(system.ctx.store, "alice", 600, failed=7)
    await sign_in(offline, system, token)
    await open_task(offline, system, task_id)
    page = offline.page
    await page.fill("#points-filter", "status=failed")
    await page.press("#points-filter", "Enter")
    await page.wait_for_function(
        "() => document.getElementById('points-table').dataset.total === '7'"
    )
    await page.fill("#points-filter", "optimizer=adam, loss<1")
    await page.press("#points-filter", "Enter")
    expected = await api_json(
        system, token, f"tasks/{task_id}/points?filter=optimizer%3Dadam%2Closs%3C1&limit=1"
    )
    await page.wait_for_function(
        f"() => document.getElementById('points-table').dataset.total === '{expected['total']}'"
    )
    await page.click("#points-table th[data-col='loss']")
    await page.wait_for_selector("#points-table th.sorted[data-col='loss']")
    await page.wait_for_function(
        "() => { const c = [...document.querySelectorAll('#points-table tbody tr')]"
        ".map(r => parseFloat(r.children[2].textContent)); "
        "return c.length > 1 && c.every((v, i) => i === 0 || c[i - 1] <= v); }"
    )
    first = await page.locator("#points-table tbody tr").first.get_attribute("data-point")
    await page.click("#points-next")
    await page.wait_for_function(
        f"() => document.querySelector('#points-table tbody tr').dataset.point !== '{first}'"
    )
    await page.screenshot(path=screenshots / "table.png", full_page=True)
    assert offline.outside == [] and offline.errors == []


async def test_a_result_arriving_shows_up_live(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    token = await system.token("alice", ["user"])
    async with httpx.AsyncClient(base_url=system.api_url, timeout=60) as api:
        site = FakeSite(api, "s1", await system.token("ops", ["edge:s1"]))
        await site.heartbeat(free=1)
        task = (await api.post("/api/v1/tasks", json=submission(3), headers=user(token))).json()
        jobs: list[dict[str, Any]] = []
        while not jobs:
            jobs = await site.lease(1, wait=0.5)
        await sign_in(offline, system, token)
        await open_task(offline, system, task["id"])
        await offline.page.wait_for_selector("#live.on")
        assert (await drawn(offline, "history"))["marks"]["points"] == "0"
        await offline.page.wait_for_selector(f"#jobs-table tr[data-job='{jobs[0]['job_id']}']")
        before = len(offline.requests)
        await site.finish(jobs[0], 0.125)
        await offline.page.wait_for_function(
            "() => document.getElementById('history').dataset.points === '1'"
        )
        await offline.page.wait_for_selector("#points-table td:text-is('0.12500')")
        await offline.page.screenshot(path=screenshots / "live.png", full_page=True)
    assert not any("/events" in url for url in offline.requests[before:])  # one stream, kept
    assert offline.outside == [] and offline.errors == []


async def test_another_users_task_is_not_reachable(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    bob = await system.token("bob", ["user"])
    task_id = await seed_task(system.ctx.store, "alice", 50, name="alice's secret")
    await sign_in(offline, system, bob)
    assert await offline.page.locator("#tasks tr").count() == 0
    await offline.page.goto(f"{system.monitor_url}/#/task/{task_id}")
    await offline.page.wait_for_function(
        "() => document.getElementById('error').textContent.includes('No task')"
    )
    assert await offline.page.locator("#view-task").is_hidden()
    assert "alice" not in await offline.page.inner_text("body")
    await offline.page.screenshot(path=screenshots / "refused.png")
    assert offline.outside == []


async def test_a_task_whose_every_point_failed_is_red_not_green(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    token = await system.token("alice", ["user"])
    bad = await seed_task(system.ctx.store, "alice", 6, name="all failed", failed=6)
    good = await seed_task(system.ctx.store, "alice", 6, name="fine", seed=4)
    await sign_in(offline, system, token)
    await offline.page.wait_for_selector(f"tr[data-task='{bad}'] .badge[data-health='failed']")
    colour = await offline.page.locator(f"tr[data-task='{bad}'] .badge").evaluate(
        "b => getComputedStyle(b).color"
    )
    good_colour = await offline.page.locator(f"tr[data-task='{good}'] .badge").evaluate(
        "b => getComputedStyle(b).color"
    )
    assert colour == "rgb(207, 34, 46)" and good_colour == "rgb(26, 127, 55)"
    assert "every point failed" in await offline.page.inner_text(f"tr[data-task='{bad}']")
    await offline.page.screenshot(path=screenshots / "list.png")


async def test_pareto_front_of_a_two_objective_task(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    token = await system.token("alice", ["user"])
    task_id = await seed_task(
        system.ctx.store, "alice", 800, name="two objectives", directions=["minimize", "minimize"]
    )
    front = await api_json(system, token, f"tasks/{task_id}/pareto")
    await sign_in(offline, system, token)
    await open_task(offline, system, task_id)
    await offline.page.wait_for_function(
        "() => document.getElementById('pareto').dataset.points !== undefined"
    )
    chart = await drawn(offline, "pareto")
    counts = {t["name"]: t["n"] for t in chart["traces"]}
    assert counts == {
        "Pareto front": len(front["front"]["ids"]),
        "dominated": 800 - counts["Pareto front"],
    }
    await offline.page.screenshot(path=screenshots / "pareto.png", full_page=True)


async def test_sites_page_shows_slots_and_occupancy(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    token = await system.token("alice", ["user"])
    async with httpx.AsyncClient(base_url=system.api_url, timeout=60) as api:
        site = FakeSite(api, "gpu-site", await system.token("ops", ["edge:gpu-site"]))
        await site.heartbeat(free=2)
    from tests.integration.monitor_support import monitor_state

    await monitor_state(system).occupancy.sample(force=True)
    await sign_in(offline, system, token)
    await offline.page.goto(f"{system.monitor_url}/#/sites")
    row = offline.page.locator("tr[data-site='gpu-site']")
    await row.wait_for()
    text = await row.inner_text()
    assert "amd64" in text and "0 / 2" in text
    await offline.page.wait_for_function(
        "() => Number(document.getElementById('occupancy').dataset.points) >= 1"
    )
    await offline.page.screenshot(path=screenshots / "sites.png")


async def test_sign_in_with_a_typed_token(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    token = await system.token("carol", ["user"])
    await offline.page.goto(system.monitor_url + "/")
    await offline.page.wait_for_selector("#login:not([hidden])")
    await offline.page.fill("#token", "hpo_not-a-token")
    await offline.page.click("#login button")
    await offline.page.wait_for_function(
        "() => document.getElementById('error').textContent.includes('refused')"
    )
    await offline.page.fill("#token", token)
    await offline.page.click("#login button")
    await offline.page.wait_for_selector("#who:text-is('carol')")
    await offline.page.screenshot(path=screenshots / "signed-in.png")


async def test_the_api_docs_render_offline(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    await offline.page.goto(system.api_url + "/docs")
    await offline.page.wait_for_selector(".opblock")
    assert await offline.page.locator(".opblock").count() > 10
    await offline.page.screenshot(path=screenshots / "docs.png")
    assert offline.outside == []


async def test_a_finished_task_after_a_monitor_restart_draws_and_zooms(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    """The first render comes from the stored view (the points are not loaded yet); the
    zoom after it re-cuts the window from the loaded points."""
    token = await system.token("alice", ["user"])
    task_id = await seed_task(system.ctx.store, "alice", 4000, name="restarted", curves=10)
    history = await api_json(system, token, f"tasks/{task_id}/history")  # stores the view
    cache = monitor_state(system).cache
    cache.entries.clear()  # as a restart leaves it
    loads = cache.loads
    await sign_in(offline, system, token)
    await offline.page.goto(f"{system.monitor_url}/#/task/{task_id}")
    await offline.page.wait_for_function("() => window.hpoDash.marks.firstRender !== undefined")
    # the first render may be the canvas preview or Plotly's chart, whichever the page
    # had first (a busy machine decides); the markers are counted on Plotly's
    await offline.page.wait_for_function(
        "() => { const d = document.getElementById('history');"
        " return d.data !== undefined && d.dataset.points !== undefined; }"
    )
    chart = await drawn(offline, "history")
    markers = sum(t["n"] for t in chart["traces"] if t["name"] in ("evaluated", "pruned"))
    assert markers == len(history["x"]) == int(chart["marks"]["points"]) < 4000
    table = offline.page.locator("#points-table")
    assert await table.get_attribute("data-total") == "4000"
    assert await table.locator("tbody tr").count() == 50
    assert await table.locator("tbody tr td").first.text_content() == "0"
    await offline.page.evaluate(
        "Plotly.relayout(document.getElementById('history'), {'xaxis.range': [1000, 1499]})"
    )
    await offline.page.wait_for_function(  # every point of the window, from the loaded task
        "() => document.getElementById('history').dataset.points === '500'"
    )
    await offline.page.locator("#points-next").click()
    await offline.page.wait_for_function(
        "() => document.querySelector('#points-table tbody tr td').textContent === '50'"
    )
    assert cache.loads == loads + 1
    await offline.page.screenshot(path=screenshots / "task-after-restart.png", full_page=True)
    assert offline.outside == [] and offline.errors == []


async def test_the_history_is_previewed_until_plotly_is_in(
    system: Central, offline: OfflinePage, screenshots: Path
) -> None:
    """Plotly's bundle held back: the page still draws the history (on a canvas, every
    marker of the series) and the points table; then Plotly's chart replaces it."""
    token = await system.token("alice", ["user"])
    task_id = await seed_task(system.ctx.store, "alice", 3000, name="previewed")
    history = await api_json(system, token, f"tasks/{task_id}/history")
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await offline.page.route("**/assets/plotly.min.js", hold)  # the page preloads it
    await sign_in(offline, system, token)
    await offline.page.goto(f"{system.monitor_url}/#/task/{task_id}")
    await offline.page.wait_for_function(
        "() => performance.getEntriesByName('hpo-first-render').length"
    )
    assert await offline.page.locator("#history canvas.preview").count() == 1
    assert await offline.page.get_attribute("#history", "data-preview") == str(len(history["x"]))
    assert await offline.page.locator("#points-table tbody tr").count() == 50
    assert await offline.page.evaluate("typeof window.Plotly") == "undefined"
    await offline.page.screenshot(path=screenshots / "task-preview.png")
    release.set()
    await offline.page.wait_for_function(
        f"() => document.getElementById('history').dataset.points === '{len(history['x'])}'"
    )
    assert await offline.page.locator("#history canvas.preview").count() == 0
    chart = await drawn(offline, "history")
    assert sum(t["n"] for t in chart["traces"] if t["name"] == "evaluated") == len(history["x"])
    assert offline.outside == [] and offline.errors == []
