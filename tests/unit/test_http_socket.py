"""The api's listening socket: connections accepted on it send small writes at once."""

from __future__ import annotations

import asyncio
import socket

from services.http import bind


async def test_accepted_connections_have_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on connections accepted from a socket whose
    protocol is IPPROTO_TCP; without it a keep-alive response, written as headers then
    body, waits some 40 ms for the client's delayed ACK (the ask latency benchmark went
    from 60 ms to 12 ms per ask when this was fixed)."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    listener = bind("127.0.0.1", 0)
    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        _, writer = await asyncio.open_connection(*listener.getsockname())
        assert await asyncio.wait_for(accepted, 5) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
