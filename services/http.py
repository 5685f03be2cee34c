"""Serving a FastAPI app inside a process that runs other things too.

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


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind now, so that the port is known (port 0 picks a free one) before serving.

    The protocol is named (``IPPROTO_TCP``, not the default 0) because asyncio turns on
    ``TCP_NODELAY`` only for connections accepted on a socket that says it is TCP.
    Without it every keep-alive response, written as headers then body, waits for the
    client's delayed ACK: some 40 ms per request.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
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
