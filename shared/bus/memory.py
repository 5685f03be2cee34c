"""In-process adapter of the bus port, chosen by ``memory://``.

It keeps the contract of the RabbitMQ adapter so that the embedded single-process
default and fast tests behave like production: messages are encoded and decoded
through ``shared.messages`` exactly as on the wire; topic routing with ``*`` and ``#``;
one queue per service shared by competing consumers; a queue only receives messages
once it is declared (``declare`` or ``subscribe``); at-least-once delivery with ack
after the handler returns; redelivery ``redelivery_delay`` seconds after a handler
raises; a per-message delivery count, dead-lettering once a message has been delivered
``delivery_limit`` times (a consumer cancelled while holding a message counts as a
delivery, as on a quorum queue); poison messages (unknown routing key, body that does
not validate) straight to the dead-letter queue; at most ``prefetch`` handlers running
per subscription; watches (``watch``), each with a queue of its own that receives a copy
of every matching message, forgotten when the watch is cancelled.

All ``MemoryBus`` objects with the same prefix in one process share one broker, as
clients of one RabbitMQ server do; ``delete_all`` forgets it.

Requests (``request``/``serve``) mirror the RabbitMQ adapter too, through the same wire
format: servers of a target take requests round robin, up to ``prefetch`` each; a
request for a target without servers raises ``NoResponderError`` at once; a request
still waiting for a server when its caller times out is discarded; a server cancelled
mid-call abandons its requests unanswered, and when the last server of a target leaves,
the requests waiting for it are discarded, as RabbitMQ deletes the auto-delete queue.

Not supported: nothing survives the process (the reconcile loops of docs/architecture.md §4
rebuild the work from the database); no delivery between processes; no connection
loss to recover from (``RequestLostError`` only comes from ``close``). All objects of
one prefix must be used from one event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.bus.port import (
    DeadLetter,
    DeadLetterHandler,
    Handler,
    NoResponderError,
    RequestHandler,
    RequestLostError,
    RequestTimeoutError,
    answer,
    check_target,
    encode_rpc,
    read_reply,
    watching,
)
from shared.messages import Message, UnknownMessageError, decode, encode

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic rule: dot-separated words, ``*`` is one word, ``#`` zero or more."""
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


class _PoisonError(Exception):
    """The body can never become a contract message: retrying cannot help."""


@dataclass(eq=False)
class _Envelope:
    routing_key: str
    body: bytes
    deliveries: int = 0
    death: tuple[str, str] | None = None  # (queue, reason) once dead-lettered


_Work = Callable[[_Envelope], Coroutine[Any, Any, None]]


class _Queue:
    """Ready messages and the consumers they are pushed to, round robin."""

    def __init__(self, name: str, delivery_limit: int | None, dead_letters: _Queue | None):
        self.name = name
        self.delivery_limit = delivery_limit
        self.patterns: set[str] = set()
        self.consumers: list[_MemorySubscription] = []
        self._ready: deque[_Envelope] = deque()
        self._dead_letters = dead_letters
        self._turn = 0

    def matches(self, routing_key: str) -> bool:
        return any(topic_matches(pattern, routing_key) for pattern in self.patterns)

    def put(self, envelope: _Envelope) -> None:
        self._ready.append(envelope)
        self.dispatch()

    def give_back(self, envelope: _Envelope) -> None:
        """A delivery ended without ack: requeue at the front, or dead-letter at the limit."""
        if self.delivery_limit is not None and envelope.deliveries >= self.delivery_limit:
            self.dead_letter(envelope, "delivery_limit")
        else:
            self._ready.appendleft(envelope)
            self.dispatch()

    def dead_letter(self, envelope: _Envelope, reason: str) -> None:
        if self._dead_letters is None:
            log.error("dropped %r from %s (%s)", envelope.routing_key, self.name, reason)
            return
        death = (self.name, reason)
        self._dead_letters.put(_Envelope(envelope.routing_key, envelope.body, death=death))

    def dispatch(self) -> None:
        while self._ready:
            consumer = self._next_consumer()
            if consumer is None:
                return
            consumer.start(self._ready.popleft())

    def _next_consumer(self) -> _MemorySubscription | None:
        count = len(self.consumers)
        for step in range(count):
            consumer = self.consumers[(self._turn + step) % count]
            if consumer.has_capacity():
                self._turn = (self._turn + step + 1) % count
                return consumer
        return None


_Reply = tuple[str, bytes]


@dataclass(eq=False)
class _Call:
    kind: str
    body: bytes
    reply: asyncio.Future[_Reply]


class _RpcQueue:
    """Requests of one target waiting for a server, and its servers, round robin."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.servers: list[_MemoryServer] = []
        self.waiting: deque[_Call] = deque()
        self._turn = 0

    def dispatch(self) -> None:
        while self.waiting:
            count = len(self.servers)
            for step in range(count):
                server = self.servers[(self._turn + step) % count]
                if server.has_capacity():
                    self._turn = (self._turn + step + 1) % count
                    server.start(self.waiting.popleft())
                    break
            else:
                return


class _Broker:
    """The queues of one prefix."""

    def __init__(self, prefix: str) -> None:
        self.dead_letters = _Queue(f"{prefix}hpo.dead-letter", None, None)
        self.queues: dict[str, _Queue] = {}
        self.rpc_queues: dict[str, _RpcQueue] = {}

    def declare(self, name: str, delivery_limit: int, routing_keys: Sequence[str]) -> _Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = _Queue(name, delivery_limit, self.dead_letters)
        elif queue.delivery_limit != delivery_limit:
            raise ValueError(
                f"queue {name} exists with delivery_limit {queue.delivery_limit}, "
                f"not {delivery_limit}"
            )
        queue.patterns.update(routing_keys)
        return queue

    def route(self, routing_key: str, body: bytes) -> None:
        for queue in self.queues.values():
            if queue.matches(routing_key):
                queue.put(_Envelope(routing_key, body))


_BROKERS: dict[str, _Broker] = {}


class MemoryBus:
    """The bus inside one process; see the module docstring for what it mirrors."""

    def __init__(
        self, *, prefix: str = "", delivery_limit: int = 5, redelivery_delay: float = 0.2
    ) -> None:
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        self._prefix = prefix
        self._delivery_limit = delivery_limit
        self._redelivery_delay = redelivery_delay
        self.dead_letter_queue = f"{prefix}hpo.dead-letter"
        self._broker: _Broker | None = None
        self._subscriptions: list[_MemorySubscription | _MemoryServer] = []
        self._pending: set[asyncio.Future[_Reply]] = set()
        self._watches = 0

    def queue_name(self, service: str) -> str:
        return f"{self._prefix}hpo.{service}"

    def rpc_queue_name(self, target: str) -> str:
        return f"{self._prefix}hpo.rpc.{check_target(target)}"

    async def connect(self) -> None:
        if self._broker is None:
            broker = _BROKERS.get(self._prefix)
            if broker is None:
                broker = _BROKERS[self._prefix] = _Broker(self._prefix)
            self._broker = broker

    async def ping(self) -> None:
        if self._broker is None:
            raise RuntimeError("bus is not connected")

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.cancel()
        for future in self._pending:
            if not future.done():
                future.set_exception(RequestLostError("the bus was closed"))
        self._broker = None

    async def publish(self, message: Message) -> None:
        self._require_broker().route(message.routing_key, encode(message))

    async def declare(self, service: str, routing_keys: Sequence[str]) -> None:
        """Declare the service's queue and bindings so it keeps messages from now on."""
        self._declare(service, routing_keys)

    async def subscribe(
        self,
        service: str,
        routing_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 16,
    ) -> _MemorySubscription:
        async def work(envelope: _Envelope) -> None:
            try:
                decoded = decode(envelope.routing_key, envelope.body)
            except (UnknownMessageError, ValidationError) as exc:
                raise _PoisonError(str(exc)) from exc
            await handler(decoded)

        return self._consume(self._declare(service, routing_keys), work, prefetch)

    async def subscribe_dead_letters(self, handler: DeadLetterHandler) -> _MemorySubscription:
        async def work(envelope: _Envelope) -> None:
            queue, reason = envelope.death or ("", "unknown")
            dead = DeadLetter(
                routing_key=envelope.routing_key, body=envelope.body, queue=queue, reason=reason
            )
            await handler(dead)

        return self._consume(self._require_broker().dead_letters, work, 16)

    async def watch(self, routing_keys: Sequence[str], handler: Handler) -> _MemorySubscription:
        broker = self._require_broker()
        self._watches += 1
        name = f"{self._prefix}hpo.watch.{id(self):x}.{self._watches}"
        queue = broker.queues[name] = _Queue(name, None, None)
        queue.patterns.update(routing_keys)
        run = watching(handler)

        async def work(envelope: _Envelope) -> None:
            try:
                decoded = decode(envelope.routing_key, envelope.body)
            except (UnknownMessageError, ValidationError) as exc:
                log.error("dropped undecodable %r on %s: %s", envelope.routing_key, name, exc)
                return
            await run(decoded)

        subscription = self._consume(queue, work, 16)
        subscription.on_cancel(lambda: broker.queues.pop(name, None))
        return subscription

    async def request(
        self,
        target: str,
        message: Message,
        *,
        timeout: float,  # noqa: ASYNC109 - it is also the request's TTL in the queue
    ) -> Message:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        kind, body = encode_rpc(message)
        name = self.rpc_queue_name(target)
        queue = self._require_broker().rpc_queues.get(name)
        if queue is None:
            raise NoResponderError(f"no server serves {target!r}")
        call = _Call(kind, body, asyncio.get_running_loop().create_future())
        self._pending.add(call.reply)
        queue.waiting.append(call)
        queue.dispatch()
        try:
            async with asyncio.timeout(timeout):
                kind, body = await call.reply
        except TimeoutError:
            raise RequestTimeoutError(f"no reply from {target!r} within {timeout} s") from None
        finally:
            self._pending.discard(call.reply)
            if call in queue.waiting:
                queue.waiting.remove(call)  # expired before a server took it
        return read_reply(kind, body)

    async def serve(
        self, target: str, handler: RequestHandler, *, prefetch: int = 16
    ) -> _MemoryServer:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        name = self.rpc_queue_name(target)
        broker = self._require_broker()
        queue = broker.rpc_queues.get(name)
        if queue is None:
            queue = broker.rpc_queues[name] = _RpcQueue(name)

        def forget(server: _MemoryServer) -> None:
            self._subscriptions.remove(server)
            if not queue.servers and broker.rpc_queues.get(name) is queue:
                del broker.rpc_queues[name]  # auto-delete: waiting requests go with it

        server = _MemoryServer(queue, handler, prefetch, forget)
        self._subscriptions.append(server)
        queue.servers.append(server)
        queue.dispatch()
        return server

    async def delete_all(
        self, services: Iterable[str] = (), rpc_targets: Iterable[str] = ()
    ) -> None:
        """Forget every queue of this prefix (for tests and tools only); ``services`` and
        ``rpc_targets`` are accepted for symmetry with the RabbitMQ adapter."""
        del services, rpc_targets
        _BROKERS.pop(self._prefix, None)

    def _require_broker(self) -> _Broker:
        if self._broker is None:
            raise RuntimeError("bus is not connected")
        return self._broker

    def _declare(self, service: str, routing_keys: Sequence[str]) -> _Queue:
        broker = self._require_broker()
        return broker.declare(self.queue_name(service), self._delivery_limit, routing_keys)

    def _consume(self, queue: _Queue, work: _Work, prefetch: int) -> _MemorySubscription:
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        subscription = _MemorySubscription(
            queue, work, prefetch, self._redelivery_delay, self._subscriptions.remove
        )
        self._subscriptions.append(subscription)
        queue.consumers.append(subscription)
        queue.dispatch()
        return subscription


class _MemorySubscription:
    """One consumer of a queue; each delivery runs in its own task."""

    def __init__(
        self,
        queue: _Queue,
        work: _Work,
        prefetch: int,
        redelivery_delay: float,
        forget: Callable[[_MemorySubscription], None],
    ) -> None:
        self._queue = queue
        self._work = work
        self._prefetch = prefetch
        self._redelivery_delay = redelivery_delay
        self._forget = forget
        self._cancelled = False
        self._unacked: list[_Envelope] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_cancel: list[Callable[[], object]] = []

    def has_capacity(self) -> bool:
        return not self._cancelled and len(self._unacked) < self._prefetch

    def on_cancel(self, callback: Callable[[], object]) -> None:
        self._on_cancel.append(callback)

    def start(self, envelope: _Envelope) -> None:
        envelope.deliveries += 1
        self._unacked.append(envelope)
        task = asyncio.get_running_loop().create_task(self._process(envelope))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        """Stop consuming now. Running handlers are abandoned (cancelled) and their
        messages go back to the queue, as when a consumer's channel closes."""
        if self._cancelled:
            return
        self._cancelled = True
        self._forget(self)
        self._queue.consumers.remove(self)
        for callback in self._on_cancel:
            callback()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        unacked, self._unacked = self._unacked, []
        for envelope in reversed(unacked):
            self._queue.give_back(envelope)

    async def _process(self, envelope: _Envelope) -> None:
        if await self._attempt(envelope):
            await asyncio.sleep(self._redelivery_delay)
            self._unacked.remove(envelope)
            self._queue.give_back(envelope)
        else:
            self._unacked.remove(envelope)
        self._queue.dispatch()

    async def _attempt(self, envelope: _Envelope) -> bool:
        """Run the work once; True when it failed and the message must come back."""
        try:
            await self._work(envelope)
        except _PoisonError as exc:
            log.error(
                "poison message on %s (routing key %r) dead-lettered: %s",
                self._queue.name,
                envelope.routing_key,
                exc,
            )
            self._queue.dead_letter(envelope, "rejected")
            return False
        except asyncio.CancelledError:
            if self._cancelled or _being_cancelled():
                raise
            log.warning("handler on %s was cancelled; redelivering", self._queue.name)
            return True
        except Exception:
            log.warning(
                "handler on %s failed for %r; redelivering",
                self._queue.name,
                envelope.routing_key,
                exc_info=True,
            )
            return True
        return False


class _MemoryServer:
    """One server of a target; each request runs in its own task and is answered once."""

    def __init__(
        self,
        queue: _RpcQueue,
        handler: RequestHandler,
        prefetch: int,
        forget: Callable[[_MemoryServer], None],
    ) -> None:
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._forget = forget
        self._cancelled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def has_capacity(self) -> bool:
        return not self._cancelled and len(self._tasks) < self._prefetch

    def start(self, call: _Call) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(call))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def cancel(self) -> None:
        """Stop serving now; the requests being answered are abandoned unanswered."""
        if self._cancelled:
            return
        self._cancelled = True
        self._queue.servers.remove(self)
        self._forget(self)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer(self, call: _Call) -> None:
        reply = await answer(self._handler, call.kind, call.body)
        if not call.reply.done():
            call.reply.set_result(reply)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._cancelled:
            self._queue.dispatch()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
