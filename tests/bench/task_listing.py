"""Reading a big task: the task view, pages of its points and jobs, the monitor's task list.

For each size the script seeds a finished task (tests/browser/seed.py: real submission
model and point documents written as the services write them) and times, through the
api over HTTP, median of ``--repeat``: the task view (and once, its first view, which
builds the task's point summaries); the first page of points (100, in
generation order and by loss); a page 90 % of the way in (by its cursor); the first page
of jobs; and the monitor's task list (it lists every size at once, so its figure is the
same task list however big the tasks in it are). One JSON line per size.
``--objectives 2`` seeds multi-objective tasks instead: their view carries the Pareto
front of every segment.

Run: python tests/bench/task_listing.py [--sizes 100 10000 100000] [--objectives K]
[--database NAME]
(uses HPO_TEST_MONGO_URL when set, otherwise starts a SecantusDB; seeding 100k points
takes minutes, ``--database`` reuses an earlier run's.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.store.server import start_secantus
from tests.browser.seed import seed_task
from tests.integration.central import Central, central


def say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


async def timed(http: httpx.AsyncClient, url: str, repeat: int, **params: Any) -> float:
    """The median milliseconds of ``repeat`` GETs of ``url`` (after one untimed warm-up)."""
    (await http.get(url, params=params)).raise_for_status()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        reply = await http.get(url, params=params)
        times.append(time.perf_counter() - started)
        reply.raise_for_status()
    return round(statistics.median(times) * 1e3, 1)


async def deep_cursor(http: httpx.AsyncClient, url: str, size: int) -> str | None:
    """The cursor of the page 90 % of the way into the listing (read once, untimed, in
    pages of at most 10,000)."""
    left, cursor = int(size * 0.9), None
    while left > 0:
        params: dict[str, Any] = {"limit": min(left, 10_000)}
        if cursor:
            params["cursor"] = cursor
        reply = await http.get(url, params=params)
        reply.raise_for_status()
        cursor = reply.headers.get("X-Next-Cursor")
        left -= params["limit"]
    return cursor


async def first_view(http: httpx.AsyncClient, url: str) -> float:
    """The first view of a task after it was written (its summary built from nothing)."""
    started = time.perf_counter()
    (await http.get(url)).raise_for_status()
    return round((time.perf_counter() - started) * 1e3, 1)


async def measure(
    system: Central, token: str, size: int, task_id: str, repeat: int, objectives: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=system.api_url, headers=headers, timeout=600) as api,
        httpx.AsyncClient(base_url=system.monitor_url, headers=headers, timeout=600) as monitor,
    ):
        points = f"/api/v1/tasks/{task_id}/points"
        first = await first_view(api, f"/api/v1/tasks/{task_id}")
        cursor = await deep_cursor(api, points, size) if size > 100 else None
        result: dict[str, Any] = {
            "bench": "task_listing",
            "points": size,
            "objectives": objectives,
            "task_view_first_ms": first,
            "task_view_ms": await timed(api, f"/api/v1/tasks/{task_id}", repeat),
            "points_first_page_ms": await timed(api, points, repeat, limit=100),
            "points_by_loss_first_page_ms": await timed(
                api, points, repeat, limit=100, order="loss"
            ),
            "points_deep_page_ms": (
                await timed(api, points, repeat, limit=100, cursor=cursor) if cursor else None
            ),
            "jobs_first_page_ms": await timed(
                api, f"/api/v1/tasks/{task_id}/jobs", repeat, limit=100
            ),
            "monitor_task_list_ms": await timed(monitor, "/monitor/api/tasks", repeat),
            "load_average": round(os.getloadavg()[0], 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
        }
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--objectives", type=int, default=1, help="losses per point")
    parser.add_argument("--database", help="a database an earlier run seeded")
    args = parser.parse_args()
    mongo = os.environ.get("HPO_TEST_MONGO_URL")
    server = None
    if not mongo:
        server = start_secantus(Path(tempfile.mkdtemp(prefix="bench-db-")))
        mongo = server.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = f"{mongo.rstrip('/')}/{args.database or 'listing' + uuid.uuid4().hex[:8]}"
            say(f"database {db}")
            async with central(
                mongo_url=db, bus_url="memory://", bus_prefix="", artifacts_url=f"file://{tmp}"
            ) as system:
                token = await system.token("bench", ["user"])
                seeded = {
                    t.name: t.id for t in await system.ctx.store.tasks.list_for_owner("bench")
                }
                tasks = {}
                for size in args.sizes:
                    name = f"{size} points, {args.objectives} objective(s)"
                    directions = ["minimize"] * args.objectives if args.objectives > 1 else None
                    if name not in seeded:
                        say(f"seeding a task of {size} points")
                        seeded[name] = await seed_task(
                            system.ctx.store, "bench", size, name=name, directions=directions
                        )
                    tasks[size] = seeded[name]
                for size in args.sizes:
                    say(f"reading the task of {size} points")
                    line = await measure(
                        system, token, size, tasks[size], args.repeat, args.objectives
                    )
                    print(json.dumps(line), flush=True)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
