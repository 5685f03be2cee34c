"""The REST api: user tasks, the edge protocol and, for ``file://`` stores, artifacts.

Unexpected errors are logged with an id and answered as a plain 500 carrying that id:
a user never sees a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from services.api.offload import Offloader
from services.api.routers import (
    checkpoints,
    datasets,
    edge,
    edge_curves,
    exports,
    hopaas,
    studies,
    tasks,
)
from services.api.tokencache import TokenCache
from services.api.unavailable import OUTAGE_TYPES, unavailable_response
from services.api.validation import validation_error
from services.api.wakeups import SiteWakeups
from services.consumer import WebService
from services.context import Context
from shared.artifacts.file import FileArtifactStore
from shared.clock import new_id
from shared.config import ApiSettings

log = logging.getLogger(__name__)


def create_app(ctx: Context, settings: ApiSettings) -> FastAPI:
    app = FastAPIOffline(  # /docs and /redoc without a CDN
        title="hpo-relay", version="0.1.0", max_body_size=settings.max_body_bytes
    )
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.offloader = Offloader()
    app.state.wakeups = SiteWakeups(ctx.bus)
    app.state.tokens = TokenCache(ctx.store, ctx.bus, ttl=settings.token_cache_seconds)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(tasks.router)
    app.include_router(edge.router)
    app.include_router(edge_curves.router)
    app.include_router(checkpoints.router)
    app.include_router(hopaas.router)
    app.include_router(studies.router)
    app.include_router(exports.router)
    app.include_router(datasets.router)
    if isinstance(ctx.artifacts, FileArtifactStore):
        from services.api.routers.artifacts import build_router

        app.include_router(build_router(ctx.artifacts))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return unavailable_response(request, exc, settings.retry_after_seconds)

    for kind in OUTAGE_TYPES:
        app.add_exception_handler(kind, unavailable)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        error_id = new_id()
        log.error("error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": f"internal error (id {error_id})"})

    return app


class ApiService(WebService):
    name = "api"

    def __init__(self, ctx: Context, settings: ApiSettings) -> None:
        super().__init__(create_app(ctx, settings))

    async def start(self) -> None:
        await self.app.state.wakeups.start()
        await self.app.state.tokens.start()

    async def stop(self) -> None:
        await self.app.state.wakeups.stop()
        await self.app.state.tokens.stop()
