"""The 422 reply to a body that fails validation, safe to send whatever the body held.

FastAPI echoes each error's ``input``; an input holding NaN or Infinity (which Python's
``json`` reads from a body) cannot be written back as JSON, so the stock handler fails
with a 500. Here such inputs are left out and the rest of the reply (``loc``, ``msg``,
``type``) is kept.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def _sendable(error: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(error, allow_nan=False)
    except ValueError:
        return {k: v for k, v in error.items() if k not in ("input", "ctx")}
    return error


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    del request
    errors = [_sendable(e) for e in jsonable_encoder(exc.errors())]
    return JSONResponse(status_code=422, content={"detail": errors})
