"""Request bodies read as JSON by their content, whatever their ``Content-Type``.

The public Hopaas client posts ``requests.post(url, data=json.dumps(body))``: a JSON
body with no ``Content-Type`` header at all, which FastAPI (rightly, by default) does
not read as JSON. The routes of the Hopaas-compatible API use :class:`JsonByContentRoute`
instead: a body that decodes as JSON is handed on as JSON; one that does not is a 400
saying why, before any handler runs. Other routes keep FastAPI's strict default.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import Message

from shared.jsonfile import JsonFileError, parse_json

_JSON = b"application/json"


class JsonByContentRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def by_content(request: Request) -> Response:
            if request.method not in ("POST", "PUT", "PATCH"):
                return await handler(request)
            body = await request.body()
            if body:
                try:
                    parse_json(body, allow_nan=True)
                except JsonFileError as exc:
                    return JSONResponse(
                        status_code=400, content={"detail": f"the body is not JSON: {exc}"}
                    )
            return await handler(_as_json(request, body))

        return by_content


def _as_json(request: Request, body: bytes) -> Request:
    """The same request, declared as JSON, its body replayed to whoever reads it."""
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"content-type"]
    scope = {**request.scope, "headers": [*headers, (b"content-type", _JSON)]}
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await request.receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)
