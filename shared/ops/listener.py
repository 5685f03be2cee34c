"""The operations listener every process opens: ``/healthz``, ``/readyz``, ``/metrics``.

``/healthz`` says the process is alive (its event loop answers). ``/readyz`` runs the
process's readiness checks now, concurrently and each within ``timeout`` seconds (a
database ping, a bus round trip; for the harvester, the api), and answers 200 only when
all pass, else 503 with what failed: a load balancer or Kubernetes then sends nothing
to a process that could not serve it. ``/metrics`` is the Prometheus text exposition of
the process's registry, after the ``refreshers`` (the state read from the database) ran,
also within ``timeout``: a slow database delays a scrape by that much at most, and the
counters are still reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[object]]
"""Raises (or outlives the timeout) when what it checks is not usable now."""

Refresher = Callable[[], Awaitable[None]]


async def run_checks(checks: Mapping[str, Check], limit: float) -> dict[str, str]:
    """Every check's verdict: ``"ok"`` or why not."""

    async def one(check: Check) -> str:
        try:
            async with asyncio.timeout(limit):
                await check()
        except TimeoutError:
            return f"no answer within {limit:g}s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return "ok"

    verdicts = await asyncio.gather(*(one(check) for check in checks.values()))
    return dict(zip(checks, verdicts, strict=True))


def ops_app(
    name: str,
    registry: CollectorRegistry,
    checks: Mapping[str, Check],
    *,
    refreshers: Sequence[Refresher] = (),
    timeout: float = 3.0,
) -> FastAPI:
    """The listener's app for the process ``name`` (``"all"``, ``"broker"``, ``"edge"``)."""
    app = FastAPI(title=f"hpo-relay {name} operations", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "process": name}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        verdicts = await run_checks(checks, timeout)
        ready = all(v == "ok" for v in verdicts.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "process": name, "checks": verdicts},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        for refresh in refreshers:
            try:
                async with asyncio.timeout(timeout):
                    await refresh()
            except Exception as exc:
                log.warning("metrics: state not refreshed: %s", exc)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
