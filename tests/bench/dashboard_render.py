"""Dashboard benchmark: a task page with 10k and 100k evaluated points in Chromium.

For each size the script seeds a finished task (tests/browser/seed.py), runs the
central services on it (all in this process, SecantusDB, memory bus), and drives
Debian's chromium through Playwright:

* first meaningful render: from navigation to the task page until the history chart
  (its canvas preview, or Plotly's chart if that came first) and the first page of the
  points table are drawn (``hpo-first-render`` mark), and until Plotly has drawn the
  history so that hover and zoom answer (``hpo-interactive``); cold three times - the
  first visitor after the monitor started, for a task no monitor has shown or kept
  (its points are read from the database), for one no monitor has shown but whose
  stored snapshot the monitor's periodic pass kept while it ran (its parts are read),
  and for one a monitor has shown before (its stored view answers) - then warm
  (median of 3 fresh page loads, the task's points in the monitor's memory);
* interactions (median of 10 each, measured in the page up to the next painted
  frame): zoom (a range set on the history chart; and the re-cut series fetched and
  drawn for the zoomed window), hover (the mouse over a point until its label is
  drawn), filter (a filter typed into the points table, answered by the server, and
  the page drawn); for the re-cut zoom also when its request left, its round trip
  and the redraw after the answer;
* edge latency: heartbeats and empty lease polls of a site (p50/p99 over 200 each)
  with no dashboard open, and with the 100k page open and reloaded every two seconds,
  with the monitor in the api's process and in a process of its own (as deployed),
  where also with the page left open (live updates only).

Prints one JSON line per measurement. Run: python tests/bench/dashboard_render.py
[--sizes 10000 100000] [--database NAME] [--no-edge] (uses HPO_TEST_MONGO_URL when
set, else starts a SecantusDB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.assembly import SERVICE_NAMES
from services.monitor.cache import SnapshotCache
from shared.store.server import start_secantus
from tests.browser.conftest import CHROMIUM, FLAGS
from tests.browser.seed import seed_task
from tests.integration.central import Central, FakeSite, central

REPO = Path(__file__).resolve().parents[2]
MACHINE = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"

HELPERS = """
window.benchUntil = (check) => new Promise((done) => {
  const poll = () => (check() ? done() : setTimeout(poll, 1)); poll(); });
window.benchFrame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
window.benchRenders = (id) => Number(document.getElementById(id).dataset.renders || 0);
performance.setResourceTimingBufferSize(100000);
"""
FIRST_RENDER = """async () => {
  await benchUntil(() => performance.getEntriesByName('hpo-first-render').length);
  return performance.getEntriesByName('hpo-first-render')[0].startTime;
}"""
INTERACTIVE = """async () => {
  await benchUntil(() => performance.getEntriesByName('hpo-interactive').length);
  return performance.getEntriesByName('hpo-interactive')[0].startTime;
}"""
ZOOM = """async ([a, b]) => {
  const div = document.getElementById('history'); const before = benchRenders('history');
  const t0 = performance.now();
  await Plotly.relayout(div, {'xaxis.range': [a, b]}); await benchFrame();
  const zoomed = performance.now() - t0;
  await benchUntil(() => benchRenders('history') > before); await benchFrame();
  const total = performance.now() - t0;
  const asked = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/history?') && e.startTime >= t0).pop();
  if (!asked) return [zoomed, total, -1, -1, -1];
  const trip = asked.responseEnd - asked.startTime;
  return [zoomed, total, asked.startTime - t0, trip, total - (asked.responseEnd - t0)];
}"""
HOVER = """async (k) => {
  const div = document.getElementById('history'); const fl = div._fullLayout; const t = div.data[0];
  const drag = div.querySelector('.nsewdrag'); const box = drag.getBoundingClientRect();
  const at = {clientX: box.left + fl.xaxis.l2p(t.x[k]), clientY: box.top + fl.yaxis.l2p(t.y[k])};
  const t0 = performance.now();
  drag.dispatchEvent(new MouseEvent('mousemove', {...at, bubbles: true}));
  await benchUntil(() => document.querySelector('#history .hovertext')); await benchFrame();
  const dt = performance.now() - t0; Plotly.Fx.unhover(div); return dt;
}"""
UNZOOM = """async () => {
  const div = document.getElementById('history'); const before = benchRenders('history');
  await Plotly.relayout(div, {'xaxis.autorange': true});
  await benchUntil(() => benchRenders('history') > before); await benchFrame();
}"""
FILTER = """async (text) => {
  const before = benchRenders('points-table');
  const input = document.getElementById('points-filter'); const t0 = performance.now();
  input.value = text; input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
  await benchUntil(() => benchRenders('points-table') > before); await benchFrame();
  return performance.now() - t0;
}"""


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def ms(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


STEP_SECONDS = 300.0
"""No single measurement may take longer: the script stops by itself."""


async def run(page: Page, script: str, arg: Any = None) -> Any:
    return await asyncio.wait_for(page.evaluate(script, arg), STEP_SECONDS)


async def first_render(page: Page, url: str) -> float:
    """Milliseconds from the navigation's start to the page's first-render mark."""
    await page.goto(url, wait_until="commit")
    value: float = await run(page, FIRST_RENDER)
    return value


async def interactive(page: Page) -> float:
    """Milliseconds from the navigation's start until Plotly drew the history (hover
    and zoom answer; before, the page shows the history's canvas preview)."""
    value: float = await run(page, INTERACTIVE)
    return value


ALL_DRAWN = "() => document.getElementById('importance').dataset.points"


async def cold_render(system: Central, token: str, task_id: str) -> tuple[float, float]:
    """The first visitor of a fresh monitor, in a fresh browser (nothing cached)."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(STEP_SECONDS * 1000)
        await context.add_init_script(f"localStorage.setItem('hpo-token', '{token}')")
        await context.add_init_script(HELPERS)
        page = await context.new_page()
        cold = await first_render(page, f"{system.monitor_url}/#/task/{task_id}")
        ready = await interactive(page)
        await page.wait_for_function(ALL_DRAWN)  # the points loaded, the view stored
        await browser.close()
    return cold, ready


async def render(
    system: Central,
    points: int,
    token: str,
    task_id: str,
    unkept: tuple[float, float],
    unseen: tuple[float, float],
) -> dict[str, Any]:
    url = f"{system.monitor_url}/#/task/{task_id}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(STEP_SECONDS * 1000)
        await context.add_init_script(f"localStorage.setItem('hpo-token', '{token}')")
        await context.add_init_script(HELPERS)
        page = await context.new_page()
        cold = await first_render(page, url)
        cold_ready = await interactive(page)
        say(f"cold render (stored view) {cold:.0f} ms")
        await page.wait_for_function(ALL_DRAWN)  # warm: the points are in the monitor
        await page.close()
        warm, warm_ready = [], []
        for _ in range(3):  # one tab at a time, as one user
            page = await context.new_page()
            warm.append(await first_render(page, url))
            warm_ready.append(await interactive(page))
            say(f"warm {warm[-1]:.0f} ms")
            await page.close()
        page = await context.new_page()
        await first_render(page, url)
        await page.wait_for_function(ALL_DRAWN)
        say("warm renders done")
        zoom, detail, hover, filt = [], [], [], []
        asked, answered, redrawn = [], [], []
        say("importance drawn")
        for i in range(10):
            a = (points // 20) * (i % 10)
            z, d, start, trip, draw = await run(page, ZOOM, [a, a + points // 10])
            zoom.append(z)
            detail.append(d)
            asked.append(start)
            answered.append(trip)
            redrawn.append(draw)
        await run(page, UNZOOM)
        for i in range(10):
            hover.append(await run(page, HOVER, i * 37))
        for i in range(10):
            filt.append(await run(page, FILTER, f"loss<{0.2 + i / 100}, optimizer=adam"))
        markers = int(await page.evaluate("document.getElementById('history').dataset.points"))
        await browser.close()
    return {
        "bench": "dashboard_render",
        "points": points,
        "first_render_cold_unkept_ms": round(unkept[0], 1),
        "first_render_cold_unseen_ms": round(unseen[0], 1),
        "first_render_cold_ms": round(cold, 1),
        "first_render_warm_ms": ms(warm),
        "interactive_cold_unkept_ms": round(unkept[1], 1),
        "interactive_cold_unseen_ms": round(unseen[1], 1),
        "interactive_cold_ms": round(cold_ready, 1),
        "interactive_warm_ms": ms(warm_ready),
        "zoom_ms": ms(zoom),
        "zoom_detail_ms": ms(detail),
        "zoom_detail_asked_after_ms": ms(asked),
        "zoom_detail_round_trip_ms": ms(answered),
        "zoom_detail_redraw_ms": ms(redrawn),
        "hover_ms": ms(hover),
        "filter_ms": ms(filt),
        "history_markers": markers,
        "load_average": round(os.getloadavg()[0], 1),
        "machine": MACHINE,
    }


async def edge_latency(
    system: Central,
    token: str,
    task_id: str | None,
    *,
    size: int,
    monitor_url: str,
    where: str,
    reload: bool,
) -> dict[str, Any]:
    """Heartbeats and empty lease polls of a site, with the 100k page open (reloaded
    every two seconds, or left open) or not."""
    async with httpx.AsyncClient(base_url=system.api_url, timeout=60) as http:
        site = FakeSite(http, "bench", await system.token("ops", ["edge:bench"]))
        stop = asyncio.Event()
        opened = asyncio.Event()
        viewer = None
        if task_id:
            url = f"{monitor_url}/#/task/{task_id}"
            viewer = asyncio.create_task(_watch(url, token, reload, opened, stop))
            await asyncio.wait_for(opened.wait(), STEP_SECONDS)  # drawn once, all panels
        beats, leases = [], []
        for _ in range(200):
            t0 = time.perf_counter()
            await site.heartbeat(free=0)
            beats.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            await site.lease(1, wait=0)
            leases.append((time.perf_counter() - t0) * 1e3)
            await asyncio.sleep(0.02)
        stop.set()
        if viewer is not None:
            await viewer
    shown = "none open"
    if task_id:
        shown = f"{size:,} point task page " + (
            "open, reloaded every 2 s" if reload else "left open"
        )
    return {
        "bench": "dashboard_edge_latency",
        "dashboard": shown,
        "monitor": where,
        "heartbeat_p50_ms": percentile(beats, 0.5),
        "heartbeat_p99_ms": percentile(beats, 0.99),
        "lease_p50_ms": percentile(leases, 0.5),
        "lease_p99_ms": percentile(leases, 0.99),
        "load_average": round(os.getloadavg()[0], 1),
        "machine": MACHINE,
    }


async def _watch(
    url: str, token: str, reload: bool, opened: asyncio.Event, stop: asyncio.Event
) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = await browser.new_context()
        context.set_default_timeout(STEP_SECONDS * 1000)
        await context.add_init_script(f"localStorage.setItem('hpo-token', '{token}')")
        await context.add_init_script(HELPERS)
        page = await context.new_page()
        await first_render(page, url)
        await page.wait_for_function(ALL_DRAWN)
        opened.set()
        while not stop.is_set():
            if reload:
                await page.reload()
                await run(page, FIRST_RENDER)
            await asyncio.sleep(2)
        await browser.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def monitor_process(db: str, artifacts: str) -> AsyncIterator[str]:
    """``hpo-services run monitor`` in a process of its own on the same database (its
    bus is its own memory bus: the monitor reads the database, it only listens to the
    bus for token revocations)."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HPO_MONGO_URL": db,
        "HPO_BUS_URL": "memory://",
        "HPO_ARTIFACTS_URL": artifacts,
        "HPO_MONITOR_PORT": str(port),
        "HPO_OPS_PORT": "off",
        "HPO_DEV_MODE": "true",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services", "run", "monitor"], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            while True:  # until it answers (the step's own limit bounds the wait)
                if proc.poll() is not None:
                    raise RuntimeError(f"the monitor process exited with {proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--database", help="a database name an earlier run seeded (seeding 100k takes minutes)"
    )
    parser.add_argument(
        "--no-edge", action="store_true", help="only the page, not the edge latency beside it"
    )
    args = parser.parse_args()
    mongo = os.environ.get("HPO_TEST_MONGO_URL")
    server = None
    if not mongo:
        server = start_secantus(Path(tempfile.mkdtemp(prefix="bench-db-")))
        mongo = server.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = f"{mongo.rstrip('/')}/{args.database or 'bench' + uuid.uuid4().hex[:8]}"
            say(f"database {db}")
            async with central(
                mongo_url=db, bus_url="memory://", bus_prefix="", artifacts_url=f"file://{tmp}"
            ) as system:
                token = await system.token("bench", ["user"])
                tasks = {}
                seeded = {
                    t.name: t.id for t in await system.ctx.store.tasks.list_for_owner("bench")
                }
                for size in args.sizes:
                    if f"{size} points" in seeded:
                        tasks[size] = seeded[f"{size} points"]
                        continue
                    say(f"seeding a task of {size} points")
                    tasks[size] = await seed_task(
                        system.ctx.store,
                        "bench",
                        size,
                        name=f"{size} points",
                        curves=100,
                        pruned=30,
                    )
            say("seeded")
            for size in args.sizes:
                say(f"rendering {size} points, cold, never shown and never kept")
                async with central(
                    mongo_url=db, bus_url="memory://", bus_prefix="", artifacts_url=f"file://{tmp}"
                ) as system:
                    store = system.ctx.store
                    # as if no monitor had shown it or kept it while it ran
                    await store.views.col.delete_one({"_id": tasks[size]})
                    await store.snapshots.drop(tasks[size])
                    unkept = await cold_render(system, token, tasks[size])
                    # as a monitor's periodic pass keeps a running task (its stored
                    # parts), without showing it
                    await store.views.col.delete_one({"_id": tasks[size]})
                    await store.snapshots.drop(tasks[size])
                    task = await store.tasks.get(tasks[size])
                    assert task is not None
                    parts = await SnapshotCache(store).keep(task)
                    say(f"kept {parts} parts")
                say(f"rendering {size} points, cold, never shown (kept while it ran)")
                async with central(
                    mongo_url=db, bus_url="memory://", bus_prefix="", artifacts_url=f"file://{tmp}"
                ) as system:
                    unseen = await cold_render(system, token, tasks[size])
                say(f"rendering {size} points (a fresh monitor: its cache cold)")
                async with central(
                    mongo_url=db, bus_url="memory://", bus_prefix="", artifacts_url=f"file://{tmp}"
                ) as system:
                    result = await render(system, size, token, tasks[size], unkept, unseen)
                    print(json.dumps(result), flush=True)
            if args.no_edge:
                return
            biggest = tasks[max(args.sizes)]
            async with central(
                mongo_url=db, bus_url="memory://", bus_prefix="", artifacts_url=f"file://{tmp}"
            ) as system:
                here = system.monitor_url
                for task_id, reload in ((None, False), (biggest, True)):
                    found = await edge_latency(
                        system,
                        token,
                        task_id,
                        size=max(args.sizes),
                        monitor_url=here,
                        where="api's process",
                        reload=reload,
                    )
                    print(json.dumps(found), flush=True)
            async with (
                central(
                    mongo_url=db,
                    bus_url="memory://",
                    bus_prefix="",
                    artifacts_url=f"file://{tmp}",
                    services=[n for n in SERVICE_NAMES if n != "monitor"],
                ) as system,
                monitor_process(db, f"file://{tmp}") as own,
            ):
                for task_id, reload in ((None, False), (biggest, False), (biggest, True)):
                    found = await edge_latency(
                        system,
                        token,
                        task_id,
                        size=max(args.sizes),
                        monitor_url=own,
                        where="own process",
                        reload=reload,
                    )
                    print(json.dumps(found), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
