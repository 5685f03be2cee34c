"""The bus port: what every service may ask of the message bus.

Events (``publish``, ``subscribe``); every adapter guarantees, and
tests/contract/test_bus.py checks:

* ``publish`` returns only once the broker has the message (publisher confirm);
  messages are persistent. When the broker cannot be reached (or the connection drops
  before the confirm) it raises ``BusUnavailableError``: the message may or may not
  have been delivered, and the caller's database write, made before, stays the truth.
* Each service owns one queue ``<prefix>hpo.<service>`` bound to the routing keys it
  handles. Several consumers of the same service share the queue (competing consumers).
* At-least-once delivery: a message is acknowledged only after the handler returns.
  A handler that raises gets the message again (redelivery); once a message has been
  delivered ``delivery_limit`` times it goes to the dead-letter queue
  ``<prefix>hpo.dead-letter`` instead of looping.
* A consumer that dies before acknowledging (crash, connection loss) loses nothing:
  the message is delivered again to another consumer or after restart.
* At most ``prefetch`` unacknowledged messages per subscription.

Watches (``watch``), for hints every process of a service must see (wake a waiting lease
poll, drop a cached token), checked by tests/contract/test_bus.py too:

* ``watch(routing_keys, handler)`` gives every watcher its own copy of each matching
  message, unlike ``subscribe``'s competing consumers; the queue behind it is the
  process's own, transient, and gone with the watcher.
* At most once: messages published while a watcher is disconnected are not kept for
  it, and a handler that raises is logged, not retried. A watch is therefore only ever
  a shortcut beside a level-triggered path that reads the database (a fallback poll, a
  cache entry's expiry), never the only way a change arrives.

Requests (``request``, ``serve``), for a caller that needs an answer now, such as the
api asking the steering process that owns a study for a point (docs/architecture.md §4);
tests/contract/test_bus_rpc.py checks:

* ``serve(target, handler)`` answers requests addressed to ``target`` (``"steering"``,
  ``"steering.<owner_id>"``) from the queue ``<prefix>hpo.rpc.<target>``. Several
  servers of one target compete: each request goes to one of them. One process may
  serve several targets. At most ``prefetch`` handlers run at once per server.
* ``request(target, message, timeout=...)`` returns the reply the handler returned, or
  raises a ``RequestError``: ``NoResponderError`` at once when no server serves the
  target (on RabbitMQ, until the broker has deleted the queue of a last server that just
  left, a timeout instead); ``RemoteError`` when the handler raised (its reason is the
  exception's text, never a traceback); ``RequestTimeoutError`` when no reply came
  within ``timeout``; ``RequestLostError`` when the caller's bus lost its connection or
  closed meanwhile.
* Unlike events, requests are neither persistent nor retried by the bus. A request
  whose server dies or is cancelled mid-call, or that waited in the queue beyond the
  caller's timeout (it is then discarded unread), is never answered; the caller gets
  ``RequestTimeoutError`` and decides whether to retry. Handlers must therefore be
  idempotent at a higher level (an ask or tell carries its own id). A reply that comes
  after its caller gave up is dropped. Handlers should return a reply for expected
  refusals (unknown study) and raise only for failures.
* Request and reply classes travel as JSON under their ``routing_key``, which names the
  kind of request in a registry of its own (``register_rpc``), apart from the event
  routing keys: both sides must register the classes they send and receive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pydantic import BaseModel, ValidationError

from shared.messages import Message, UnknownMessageError, encode

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[None]]
RequestHandler = Callable[[Message], Awaitable[Message]]

ERROR_KIND = "hpo.rpc.error"
"""The kind of a reply that carries a handler's error text instead of a message."""

_MAX_REASON = 2000


class DeadLetter(BaseModel):
    """A message that exhausted its deliveries, as found in the dead-letter queue."""

    routing_key: str
    body: bytes
    queue: str
    reason: str


DeadLetterHandler = Callable[[DeadLetter], Awaitable[None]]


class BusUnavailableError(Exception):
    """The broker could not take a message now (down, restarting, connection lost)."""


class RequestError(Exception):
    """A request ended without a reply; the base of the errors below."""


class NoResponderError(RequestError):
    """No server serves the target right now; nothing was delivered."""


class RequestTimeoutError(RequestError, TimeoutError):
    """No reply within the timeout: no server took the request in time, the server was
    slow, or it died mid-call. The request may or may not have been handled."""


class RemoteError(RequestError):
    """The server's handler raised; ``reason`` is the exception's type and text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestLostError(RequestError):
    """The caller's connection was lost or the bus closed while the request was in
    flight, so its reply can no longer arrive. It may or may not have been handled."""


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop consuming; unacknowledged messages return to the queue. A server
        abandons the requests it is answering: their callers time out."""


class Bus(Protocol):
    async def connect(self) -> None:
        """Open connections and declare the exchange; idempotent."""

    async def close(self) -> None:
        """Cancel subscriptions, fail pending requests and close connections."""

    async def ping(self) -> None:
        """One round trip to the broker that proves it answers now (for ``/readyz``);
        raises when it does not. Callers bound the time it may take."""

    async def publish(self, message: Message) -> None:
        """Publish persistently under ``message.routing_key`` and wait for the confirm."""

    async def subscribe(
        self,
        service: str,
        routing_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 16,
    ) -> Subscription:
        """Consume the service's queue (declared and bound here) with ``handler``."""

    async def subscribe_dead_letters(self, handler: DeadLetterHandler) -> Subscription:
        """Consume the dead-letter queue (for operators and tests)."""

    async def watch(self, routing_keys: Sequence[str], handler: Handler) -> Subscription:
        """Give ``handler`` a copy of every message matching ``routing_keys`` from now on
        (at most once, see the module docstring)."""

    async def request(
        self,
        target: str,
        message: Message,
        *,
        timeout: float,  # noqa: ASYNC109 - it is also the request's TTL in the queue
    ) -> Message:
        """Send ``message`` to one server of ``target`` and return its reply; raises a
        ``RequestError`` otherwise (module docstring). ``timeout`` (seconds) bounds the
        whole call, waiting for a reconnecting broker included."""

    async def serve(
        self, target: str, handler: RequestHandler, *, prefetch: int = 16
    ) -> Subscription:
        """Answer requests for ``target`` with ``handler`` until cancelled."""


# The wire format of requests and replies, shared by the adapters.

RPC_TYPES: dict[str, type[Message]] = {}


def watching(handler: Handler) -> Handler:
    """``handler`` as a watch runs it: an error is logged and the message dropped."""

    async def run(message: Message) -> None:
        try:
            await handler(message)
        except Exception:
            log.warning("watch handler failed for %r; dropped", message.routing_key, exc_info=True)

    return run


def register_rpc(*classes: type[Message]) -> None:
    """Let ``classes`` travel as requests or replies, under their ``routing_key``.

    Registering a class again is harmless; a second class under a kind already taken
    is a ``ValueError``, as it would make the receiving side decode the wrong class.
    """
    for cls in classes:
        kind = cls.routing_key
        if not kind or kind == ERROR_KIND:
            raise ValueError(f"{cls.__qualname__} needs a routing_key of its own")
        known = RPC_TYPES.setdefault(kind, cls)
        if known is not cls:
            raise ValueError(f"request kind {kind!r} is taken by {known.__qualname__}")


def check_target(target: str) -> str:
    if not target or len(target) > 200 or not target.isascii() or not target.isprintable():
        raise ValueError(f"invalid request target {target!r}")
    return target


def encode_rpc(message: Message) -> tuple[str, bytes]:
    """Kind and body of a request or reply; a ``TypeError`` for unregistered classes."""
    cls = type(message)
    if RPC_TYPES.get(cls.routing_key) is not cls:
        raise TypeError(f"{cls.__qualname__} is not registered with register_rpc")
    return cls.routing_key, encode(message)


def decode_rpc(kind: str, body: bytes) -> Message:
    try:
        cls = RPC_TYPES[kind]
    except KeyError:
        raise UnknownMessageError(kind) from None
    return cls.model_validate_json(body)


async def answer(handler: RequestHandler, kind: str, body: bytes) -> tuple[str, bytes]:
    """Run ``handler`` on a request and return the reply's kind and body; a failure
    becomes an ``ERROR_KIND`` reply. Re-raises only when the server is cancelled."""
    try:
        request = decode_rpc(kind, body)
    except (UnknownMessageError, ValidationError) as exc:
        log.error("undecodable request of kind %r: %s", kind, exc)
        return _error(f"undecodable request of kind {kind!r}: {exc}")
    try:
        return encode_rpc(await handler(request))
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling() > 0:
            raise
        return _error("the handler was cancelled")
    except Exception as exc:
        log.warning("handler for request of kind %r failed", kind, exc_info=True)
        return _error(f"{type(exc).__name__}: {exc}")


def read_reply(kind: str, body: bytes) -> Message:
    """The reply message, or the ``RequestError`` that the reply stands for."""
    if kind == ERROR_KIND:
        raise RemoteError(body.decode(errors="replace"))
    try:
        return decode_rpc(kind, body)
    except (UnknownMessageError, ValidationError) as exc:
        raise RequestError(f"undecodable reply of kind {kind!r}: {exc}") from None


def _error(reason: str) -> tuple[str, bytes]:
    return ERROR_KIND, reason[:_MAX_REASON].encode()
