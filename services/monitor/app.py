"""The monitor: the dashboard and the read API behind it, in a process of its own.

The page is static; it asks the read API with the user's token (taken from the URL
fragment, which never reaches a server log, or typed in and kept in the browser), so a
user sees only their own tasks. Reads go through the monitor's cache
(:mod:`services.monitor.cache`) and live changes are pushed as server-sent events
(:mod:`services.monitor.live`), so an open dashboard costs the database little and
never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI

from services.api.tokencache import TokenCache
from services.consumer import WebService
from services.context import Context
from services.monitor import assets, views
from services.monitor.cache import CostBounded, SnapshotCache
from services.monitor.deps import MonitorState
from services.monitor.live import Hub
from services.monitor.occupancy import Occupancy
from services.monitor.routers import artifacts, events, jobs, points, sites, tasks
from services.monitor.summaries import Summaries
from shared.config import MonitorSettings
from shared.store import Store

log = logging.getLogger(__name__)


def build_state(ctx: Context, settings: MonitorSettings) -> MonitorState:
    store = ctx.store
    cache = SnapshotCache(
        store,
        max_tasks=settings.monitor_cached_tasks,
        on_loaded=lambda entry: views.save(store, entry),
    )
    return MonitorState(
        settings=settings,
        store=ctx.store,
        artifacts=ctx.artifacts,
        cache=cache,
        summaries=Summaries(ctx.store, cache),
        hub=Hub(ctx.store, cache, interval=settings.monitor_refresh_seconds),
        occupancy=Occupancy(ctx.store, interval=settings.monitor_occupancy_seconds),
        job_counts=CostBounded(),
    )


KEEP_SECONDS = 10.0
"""How often the periodic pass brings an active task's stored snapshot up to date: a
fresh monitor reads from the points what arrived since (seconds of results)."""


async def keep_active(store: Store, cache: SnapshotCache, *, every: float = 0.0) -> int:
    """One pass of the stored snapshots: every active task's parts brought up to date,
    each at most once per ``every`` seconds (level-triggered: whatever a dead monitor
    did not store is read now); returns how many parts were written outside the cache."""
    written = 0
    active = await store.tasks.list_active()
    cache.forget_kept({t.id for t in active})
    for task in active:
        try:
            written += await cache.keep(task, every=every)
        except Exception:
            log.exception("monitor: keeping the snapshot of %s failed", task.id)
    return written


def create_app(ctx: Context, settings: MonitorSettings) -> FastAPI:
    app = FastAPI(title="hpo-relay monitor", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.monitor = build_state(ctx, settings)
    app.state.tokens = TokenCache(ctx.store, ctx.bus, ttl=settings.token_cache_seconds)
    app.include_router(assets.build_router())
    for module in (tasks, points, jobs, artifacts, sites, events):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class MonitorService(WebService):
    name = "monitor"

    def __init__(self, ctx: Context, settings: MonitorSettings) -> None:
        super().__init__(create_app(ctx, settings))
        self.state: MonitorState = self.app.state.monitor
        self._stop = asyncio.Event()
        self._live: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop.clear()
        await self.app.state.tokens.start()
        self._live = asyncio.create_task(self.state.hub.run(self._stop))

    async def reconcile(self) -> None:
        await self.state.occupancy.sample()
        await keep_active(self.state.store, self.state.cache, every=KEEP_SECONDS)

    async def stop(self) -> None:
        self._stop.set()
        if self._live is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._live
            self._live = None
        await self.state.cache.flush()
        await self.app.state.tokens.stop()
