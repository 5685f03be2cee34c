"""Serving a FastAPI app inside a process that runs other things too (services, the
harvester's operations listener).

The process owns signal handling (it stops every service, not just the web server),
so uvicorn's own signal capture is switched off and ``stop`` ends the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

from shared.startup import StartupError


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ListenError(StartupError):
    """A listening socket could not be opened; the message says where and why, and names
    the setting to change when the caller gave it."""


def bind(host: str, port: int, *, setting: str = "") -> socket.socket:
    """Bind now, so that the port is known (port 0 picks a free one) before serving, and
    so that a port in use is reported at start, before any server is contacted.

    The protocol is named (``IPPROTO_TCP``, not the default 0) because asyncio turns on
    ``TCP_NODELAY`` only for connections accepted on a socket that says it is TCP.
    Without it every keep-alive response, written as headers then body, waits for the
    client's delayed ACK: some 40 ms per request.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        named = f" (set by {setting})" if setting else ""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ListenError(f"cannot listen on {host}:{port}{named}: {reason.lower()}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def serve(app: FastAPI, sock: socket.socket, stop: asyncio.Event) -> None:
    # uvicorn's own logging set-up would give its loggers handlers of their own, which
    # neither redact nor use the structured format: its records go to the root logger's
    # handler (shared.logs), which also decides whether access lines show.
    config = uvicorn.Config(app, log_config=None, log_level=None, access_log=True, lifespan="off")
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        waiter.cancel()
        await task
        sock.close()
