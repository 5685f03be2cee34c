"""The dashboard's files: the project's own page, script and style (package data), and
Plotly's bundle from the installed ``plotly`` package. Nothing comes from a CDN, so the
dashboard works on a network with no way out."""

from __future__ import annotations

from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, HTMLResponse, Response

OWN = {
    "app.js": "text/javascript",
    "charts.js": "text/javascript",
    "task.js": "text/javascript",
    "style.css": "text/css",
}
CACHE = "public, max-age=3600"


def plotly_bundle() -> Path:
    """plotly.min.js as the ``plotly`` package ships it (found without importing it)."""
    spec = find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the plotly package is not installed: pip install plotly")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"the plotly package has no {path.name}; reinstall plotly")
    return path


def _own(name: str) -> str:
    return files("services.monitor").joinpath("static", name).read_text(encoding="utf-8")


def build_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    page = _own("index.html")
    own = {name: _own(name) for name in OWN}
    bundle = plotly_bundle()

    @router.get("/", response_class=HTMLResponse)
    async def dashboard() -> str:
        return page

    @router.get("/assets/{name}")
    async def asset(name: str) -> Response:
        if name == "plotly.min.js":
            return FileResponse(
                bundle, media_type="text/javascript", headers={"Cache-Control": CACHE}
            )
        if name not in own:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
        return Response(own[name], media_type=OWN[name], headers={"Cache-Control": "no-cache"})

    return router
