"""The monitor: a dashboard page and the read API it polls.

The page is static; it asks the read API with the user's token (taken from the URL
fragment, which never reaches a server log, or typed in and kept in the browser), so a
user sees only their own tasks here too.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from services.api.deps import Ctx, CurrentUser
from services.api.schemas import TaskView
from services.api.views import task_view
from services.consumer import WebService
from services.context import Context
from shared.config import MonitorSettings


def _page() -> str:
    return files("services.monitor").joinpath("dashboard.html").read_text(encoding="utf-8")


def create_app(ctx: Context, settings: MonitorSettings) -> FastAPI:
    app = FastAPI(title="hpo-relay monitor", version="0.1.0")
    app.state.ctx = ctx
    app.state.settings = settings
    page = _page()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        return page

    @app.get("/monitor/api/tasks")
    async def tasks(ctx: Ctx, user: CurrentUser) -> list[TaskView]:
        own = await ctx.store.tasks.list_for_owner(user.owner, limit=200)
        return [await task_view(ctx.store, t) for t in own]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class MonitorService(WebService):
    name = "monitor"

    def __init__(self, ctx: Context, settings: MonitorSettings) -> None:
        super().__init__(create_app(ctx, settings))
