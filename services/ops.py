"""The operations side of a central process: its listener, what it checks, what it times.

A process (one service, several, or the embedded default with the harvester too) has
one operations listener on ``HPO_OPS_PORT``. Readiness is a database ping and a bus
round trip. The process that runs the monitor also reads the state gauges (tasks and
jobs by state, site slots) from the database at each scrape. Reconcile passes and the
web apps' requests are timed by wrapping them here, so the services themselves only
count their own events (``ctx.metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Request, Response

from services.context import Context
from services.runner import Service
from shared.domain.models import ACTIVE_JOB_STATES, TaskStatus
from shared.ops.listener import Check, Refresher, ops_app
from shared.ops.metrics import CentralMetrics, StateGauges


class TimedService:
    """A service whose reconcile passes are timed and whose failures are counted."""

    def __init__(self, service: Service, metrics: CentralMetrics) -> None:
        self.inner = service
        self.name = service.name
        self._seconds = metrics.reconcile_seconds.labels(service.name)
        self._failures = metrics.reconcile_failures.labels(service.name)

    async def start(self) -> None:
        await self.inner.start()

    async def reconcile(self) -> None:
        started = time.perf_counter()
        try:
            await self.inner.reconcile()
        except Exception:
            self._failures.inc()
            raise
        finally:
            self._seconds.observe(time.perf_counter() - started)

    async def stop(self) -> None:
        await self.inner.stop()


def time_requests(app: FastAPI, name: str, metrics: CentralMetrics) -> None:
    """Count and time ``app``'s requests by route template (``/api/ask/{token}``, never
    the path itself, which may hold a token) and status."""

    @app.middleware("http")
    async def timed(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", None) or "unmatched"
            metrics.http_requests.labels(name, request.method, route, str(status)).inc()
            metrics.http_seconds.labels(name, route).observe(time.perf_counter() - started)


def state_refresher(ctx: Context) -> Refresher:
    gauges = StateGauges(ctx.metrics.registry)
    active_jobs = [s.value for s in ACTIVE_JOB_STATES]

    async def refresh() -> None:
        tasks = {s.value: 0 for s in TaskStatus} | await ctx.store.stats.tasks_by_status()
        jobs = await ctx.store.stats.jobs_by_status(active_jobs)
        sites = await ctx.store.sites.list_all()
        gauges.update(tasks, jobs, sites, StateGauges.now())

    return refresh


def central_checks(ctx: Context) -> dict[str, Check]:
    return {"database": ctx.store.ping, "bus": ctx.bus.ping}


def central_ops_app(
    ctx: Context,
    names: list[str],
    *,
    extra_checks: Mapping[str, Check] | None = None,
    timeout: float = 3.0,
) -> FastAPI:
    """The listener's app for a process running the services ``names``."""
    refreshers = [state_refresher(ctx)] if "monitor" in names else []
    label = names[0] if len(names) == 1 else "all"
    checks = {**central_checks(ctx), **(extra_checks or {})}
    return ops_app(label, ctx.metrics.registry, checks, refreshers=refreshers, timeout=timeout)
