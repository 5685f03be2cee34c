"""Message bus: a port and adapters chosen by URL scheme (``amqp://``, ``memory://``)."""

from __future__ import annotations

from shared.bus.port import (
    Bus,
    DeadLetter,
    Handler,
    NoResponderError,
    RemoteError,
    RequestError,
    RequestHandler,
    RequestLostError,
    RequestTimeoutError,
    Subscription,
    register_rpc,
)

SCHEMES = ("amqp", "amqps", "memory")
"""The URL schemes :func:`open_bus` has an adapter for."""


def open_bus(url: str, *, prefix: str = "", delivery_limit: int = 5) -> Bus:
    """Build (not yet connect) the adapter for ``url``.

    ``prefix`` namespaces the exchange and queues so that tests and several
    deployments can share one broker.
    """
    scheme = url.split(":", 1)[0]
    if scheme in ("amqp", "amqps"):
        from shared.bus.amqp import AmqpBus

        return AmqpBus(url, prefix=prefix, delivery_limit=delivery_limit)
    if scheme == "memory":
        from shared.bus.memory import MemoryBus

        return MemoryBus(prefix=prefix, delivery_limit=delivery_limit)
    raise ValueError(f"unsupported bus URL scheme {scheme!r}: use amqp:// or memory://")


__all__ = [
    "Bus",
    "DeadLetter",
    "Handler",
    "NoResponderError",
    "RemoteError",
    "RequestError",
    "RequestHandler",
    "RequestLostError",
    "RequestTimeoutError",
    "Subscription",
    "open_bus",
    "register_rpc",
]
