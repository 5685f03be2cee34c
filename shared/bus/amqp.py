"""RabbitMQ adapter of the bus port (aio-pika), chosen by ``amqp://`` and ``amqps://``.

Layout on the broker, all names under ``prefix``:

* one durable topic exchange ``hpo`` that every message is published to;
* per service one durable quorum queue ``hpo.<service>`` bound to the routing keys the
  service handles, with ``x-delivery-limit`` and the dead-letter exchange ``hpo.dlx``;
* the fanout exchange ``hpo.dlx`` bound to the durable quorum queue ``hpo.dead-letter``.

Supported: persistent messages with publisher confirms; competing consumers; bounded
prefetch per subscription, with up to ``prefetch`` handlers running concurrently;
ack after the handler returns; nack with requeue after ``redelivery_delay`` when it
raises, the quorum queue counting deliveries and dead-lettering a message once it has
been delivered ``delivery_limit`` times (a consumer that dies holding a message counts
as a delivery too); poison messages (unknown routing key, body that does not validate)
rejected straight to the dead-letter queue; reconnection through ``connect_robust``,
which re-declares the topology and restarts the consumers.

A publish made while the connection is being restored waits for it, up to
``publish_timeout`` seconds, then raises ``BusUnavailableError``; so does a publish
whose connection drops before the confirm arrives.

Not supported: unroutable messages are dropped silently (``mandatory=False``: a queue
only receives once it is declared); a publish whose confirm is lost with the connection
raises and is not retried here (the reconcile loops cover it, docs/reliability.md);
bindings are only ever added, never removed; changing ``delivery_limit`` of an existing
queue fails with PRECONDITION_FAILED until the queue is deleted; the dead-letter queue
has no delivery limit of its own on RabbitMQ 3.x (RabbitMQ 4 applies its default of 20).

Watches (``watch``): a classic, non-durable, exclusive, auto-delete queue
``hpo.watch.<random>`` per watcher, bound to its routing keys, each delivery
acknowledged once its handler ran (an error is logged, never redelivered); it costs the
broker no replication and vanishes with the connection; after a reconnect the robust
channel declares it afresh (messages published meanwhile were never kept for it, as the
port allows). Its length is capped (``x-max-length``), dropping the oldest, so a
stalled watcher cannot grow the broker.

Requests (``request``/``serve``, semantics in port.py):

* Each target has a classic, non-durable, auto-delete queue ``hpo.rpc.<target>`` that
  its servers declare and consume, published to through the default exchange. A request
  is worth nothing once its caller gave up, so the queue needs neither durability nor
  replication (a quorum queue would add a consensus round to every ask), and
  auto-delete makes it vanish with its last server: a request for a target nobody serves
  is published ``mandatory`` and comes back at once (``NoResponderError``). Until the
  broker has deleted the queue of a server that just left, requests time out instead.
* Requests are non-persistent and expire (per-message TTL) when the caller's timeout
  does, so stale requests do not pile up behind a slow server.
* Replies come back over RabbitMQ's direct reply-to (``amq.rabbitmq.reply-to``), consumed
  without ack on the confirm channel that publishes the requests, matched by correlation
  id. Unlike a reply queue per process it declares nothing, costs no queue on the
  broker, and its address dies with the channel, which is what we want: a reconnect
  fails the requests in flight with ``RequestLostError`` at once, as their replies could
  never arrive, instead of letting them hang until their timeout.
* A server acknowledges a request after sending the reply, so ``prefetch`` bounds the
  handlers running; a request that comes back redelivered (its server died mid-call) is
  dropped unanswered, since the bus does not retry requests.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import suppress
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    HeadersType,
)
from pydantic import ValidationError

from shared.bus.port import (
    BusUnavailableError,
    DeadLetter,
    DeadLetterHandler,
    Handler,
    NoResponderError,
    RequestError,
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

_Work = Callable[[AbstractIncomingMessage], Coroutine[Any, Any, None]]
_CANCEL_TIMEOUT = 5.0
_REPLY_TO = "amq.rabbitmq.reply-to"
_WATCH_MAX_LENGTH = 10_000
_Reply = tuple[str, bytes]
_LOST_CONNECTION = (
    aio_pika.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelClosed,
    ConnectionError,
)


class _PoisonError(Exception):
    """The body can never become a contract message: retrying cannot help."""


class AmqpBus:
    """The bus on RabbitMQ; one connection, one channel per subscription."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        delivery_limit: int = 5,
        redelivery_delay: float = 0.2,
        publish_timeout: float = 30.0,
    ) -> None:
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        self._url = url
        self._prefix = prefix
        self._delivery_limit = delivery_limit
        self._redelivery_delay = redelivery_delay
        self._publish_timeout = publish_timeout
        self.exchange_name = f"{prefix}hpo"
        self.dead_letter_queue = f"{prefix}hpo.dead-letter"
        self._dlx_name = f"{prefix}hpo.dlx"
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._subscriptions: list[_AmqpSubscription] = []
        self._services: set[str] = set()
        self._rpc_channel: AbstractRobustChannel | None = None
        self._pending: dict[str, asyncio.Future[_Reply]] = {}
        self._targets: set[str] = set()

    def queue_name(self, service: str) -> str:
        return f"{self._prefix}hpo.{service}"

    def rpc_queue_name(self, target: str) -> str:
        return f"{self._prefix}hpo.rpc.{check_target(target)}"

    async def connect(self) -> None:
        if self._connection is not None:
            return
        connection = await aio_pika.connect_robust(self._url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            dlx = await channel.declare_exchange(
                self._dlx_name, aio_pika.ExchangeType.FANOUT, durable=True
            )
            dead = await channel.declare_queue(
                self.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dead.bind(dlx)
            rpc_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            replies = await rpc_channel.declare_queue(_REPLY_TO, passive=True)
            await replies.consume(self._on_reply, no_ack=True)
        except BaseException:
            await connection.close()
            raise
        rpc_channel.close_callbacks.add(self._on_rpc_channel_closed)
        self._connection, self._channel, self._exchange = connection, channel, exchange
        self._rpc_channel = rpc_channel

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.cancel()
        self._fail_pending("the bus was closed")
        connection, self._connection = self._connection, None
        self._channel = self._exchange = self._rpc_channel = None
        if connection is not None:
            await connection.close()

    async def ping(self) -> None:
        """Open a channel, look the exchange up passively, close the channel: a closed
        or unanswering connection raises (or hangs until the caller's timeout)."""
        if self._connection is None:
            raise RuntimeError("bus is not connected")
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            await channel.declare_exchange(self.exchange_name, passive=True)
        finally:
            await channel.close()

    async def publish(self, message: Message) -> None:
        if self._exchange is None or self._channel is None:
            raise RuntimeError("bus is not connected")
        body = encode(message)
        try:
            async with asyncio.timeout(self._publish_timeout):
                while True:
                    try:
                        await self._exchange.publish(
                            aio_pika.Message(
                                body,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                content_type="application/json",
                                message_id=message.event_id,
                            ),
                            routing_key=message.routing_key,
                            mandatory=False,
                        )
                        return
                    except aio_pika.exceptions.ChannelInvalidStateError:
                        # Raised before sending, so a retry cannot duplicate the message.
                        log.info("bus is reconnecting; publish of %r waits", message.routing_key)
                        await self._channel.ready()
                        await asyncio.sleep(0.1)
        except TimeoutError:
            raise BusUnavailableError(
                f"the broker did not take {message.routing_key!r} within "
                f"{self._publish_timeout:g} s"
            ) from None
        except _LOST_CONNECTION as exc:
            raise BusUnavailableError(
                f"the connection to the broker dropped publishing {message.routing_key!r}: {exc}"
            ) from exc

    async def declare(self, service: str, routing_keys: Sequence[str]) -> None:
        """Declare the service's queue and bindings so it keeps messages from now on."""
        await self._declare(self._require_channel(), service, routing_keys)

    async def subscribe(
        self,
        service: str,
        routing_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 16,
    ) -> _AmqpSubscription:
        async def work(message: AbstractIncomingMessage) -> None:
            try:
                decoded = decode(message.routing_key or "", message.body)
            except (UnknownMessageError, ValidationError) as exc:
                raise _PoisonError(str(exc)) from exc
            await handler(decoded)

        channel = await self._open_consumer_channel(prefetch)
        queue = await self._declare(channel, service, routing_keys)
        return await self._consume(channel, queue, work)

    async def subscribe_dead_letters(self, handler: DeadLetterHandler) -> _AmqpSubscription:
        async def work(message: AbstractIncomingMessage) -> None:
            await handler(_dead_letter(message))

        channel = await self._open_consumer_channel(16)
        queue = await channel.declare_queue(
            self.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        return await self._consume(channel, queue, work)

    async def watch(self, routing_keys: Sequence[str], handler: Handler) -> _AmqpSubscription:
        run = watching(handler)
        name = f"{self._prefix}hpo.watch.{uuid.uuid4().hex}"

        async def work(message: AbstractIncomingMessage) -> None:
            try:
                decoded = decode(message.routing_key or "", message.body)
            except (UnknownMessageError, ValidationError) as exc:
                log.error("dropped undecodable %r on %s: %s", message.routing_key, name, exc)
                return
            await run(decoded)

        channel = await self._open_consumer_channel(64)
        try:
            queue = await channel.declare_queue(
                name,
                durable=False,
                exclusive=True,
                auto_delete=True,
                arguments={"x-queue-type": "classic", "x-max-length": _WATCH_MAX_LENGTH},
            )
            for key in routing_keys:
                await queue.bind(self.exchange_name, key)
        except BaseException:
            await channel.close()
            raise
        return await self._consume(channel, queue, work)

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
        queue = self.rpc_queue_name(target)
        channel = self._require_rpc_channel()
        correlation_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    await channel.ready()
                    future = self._pending[correlation_id] = loop.create_future()
                    request = aio_pika.Message(
                        body,
                        type=kind,
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                        expiration=max(deadline - loop.time(), 0.001),
                        correlation_id=correlation_id,
                        message_id=correlation_id,
                        reply_to=_REPLY_TO,
                    )
                    try:
                        await channel.default_exchange.publish(
                            request, routing_key=queue, mandatory=True
                        )
                    except aio_pika.exceptions.ChannelInvalidStateError:
                        # Raised before sending: wait for the channel to be restored.
                        _forget(self._pending.pop(correlation_id))
                        await asyncio.sleep(0.1)
                        continue
                    except aio_pika.exceptions.PublishError:
                        raise NoResponderError(f"no server serves {target!r}") from None
                    except aio_pika.exceptions.DeliveryError as exc:
                        raise RequestError(f"the broker refused a request: {exc}") from None
                    except aio_pika.exceptions.CONNECTION_EXCEPTIONS as exc:
                        raise RequestLostError(f"connection lost sending a request: {exc}") from exc
                    kind, body = await future
                    break
        except TimeoutError:
            raise RequestTimeoutError(f"no reply from {target!r} within {timeout} s") from None
        finally:
            pending = self._pending.pop(correlation_id, None)
            if pending is not None:
                _forget(pending)
        return read_reply(kind, body)

    async def serve(
        self, target: str, handler: RequestHandler, *, prefetch: int = 16
    ) -> _AmqpSubscription:
        name = self.rpc_queue_name(target)
        for attempt in range(3):
            channel = await self._open_consumer_channel(prefetch)
            try:
                queue = await channel.declare_queue(
                    name, durable=False, auto_delete=True, arguments={"x-queue-type": "classic"}
                )
            except BaseException:
                await channel.close()
                raise
            self._targets.add(target)
            try:
                return await self._consume(channel, queue, _answering(channel, name, handler))
            except aio_pika.exceptions.ChannelNotFoundEntity:
                # The last server left between our declare and consume: auto-deleted.
                log.info("queue %s vanished before it was consumed (attempt %d)", name, attempt)
        raise RuntimeError(f"could not consume {name}: it keeps being deleted")

    async def delete_all(
        self, services: Iterable[str] = (), rpc_targets: Iterable[str] = ()
    ) -> None:
        """Delete the exchanges, the dead-letter queue, the queues of ``services`` and
        ``rpc_targets`` and of every service and target this object declared. For tests
        and tools only."""
        channel = self._require_channel()
        for service in sorted(self._services.union(services)):
            await channel.queue_delete(self.queue_name(service))
        for target in sorted(self._targets.union(rpc_targets)):
            await channel.queue_delete(self.rpc_queue_name(target))
        await channel.queue_delete(self.dead_letter_queue)
        await channel.exchange_delete(self.exchange_name)
        await channel.exchange_delete(self._dlx_name)

    def _require_channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise RuntimeError("bus is not connected")
        return self._channel

    def _require_rpc_channel(self) -> AbstractRobustChannel:
        if self._rpc_channel is None:
            raise RuntimeError("bus is not connected")
        return self._rpc_channel

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.get(message.correlation_id or "")
        if future is None or future.done():
            log.debug("dropped a reply nobody waits for (%s)", message.correlation_id)
            return
        future.set_result((message.type or "", message.body))

    def _on_rpc_channel_closed(self, _: object, exc: BaseException | None) -> None:
        # Replies are addressed to this channel: those in flight can never arrive.
        self._fail_pending(f"the connection to the broker was lost ({exc!r})")

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RequestLostError(reason))

    async def _declare(
        self, channel: AbstractRobustChannel, service: str, routing_keys: Sequence[str]
    ) -> AbstractQueue:
        queue = await channel.declare_queue(
            self.queue_name(service),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                # RabbitMQ dead-letters once a message was *returned* more than the limit.
                "x-delivery-limit": self._delivery_limit - 1,
                "x-dead-letter-exchange": self._dlx_name,
            },
        )
        for key in routing_keys:
            await queue.bind(self.exchange_name, key)
        self._services.add(service)
        return queue

    async def _open_consumer_channel(self, prefetch: int) -> AbstractRobustChannel:
        if self._connection is None:
            raise RuntimeError("bus is not connected")
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        channel = await self._connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def _consume(
        self, channel: AbstractRobustChannel, queue: AbstractQueue, work: _Work
    ) -> _AmqpSubscription:
        subscription = _AmqpSubscription(
            channel, queue, work, self._redelivery_delay, self._subscriptions.remove
        )
        try:
            await subscription.start()
        except BaseException:
            await channel.close()
            raise
        self._subscriptions.append(subscription)
        return subscription


class _AmqpSubscription:
    """One consumer on its own channel; each delivery runs in its own task."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        work: _Work,
        redelivery_delay: float,
        forget: Callable[[_AmqpSubscription], None],
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._work = work
        self._redelivery_delay = redelivery_delay
        self._forget = forget
        self._consumer_tag: str | None = None
        self._cancelled = False
        self._handlers: set[asyncio.Task[None]] = set()
        self._deliveries: set[asyncio.Task[object]] = set()

    async def start(self) -> None:
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def cancel(self) -> None:
        """Stop consuming now. Running handlers are abandoned (cancelled) and their
        messages go back to the queue with the channel; settling acks complete."""
        if self._cancelled:
            return
        self._cancelled = True
        self._forget(self)
        # basic.cancel first so that no more messages arrive while acks finish; bounded,
        # since a robust channel waits for a reconnect that may never come.
        with suppress(*aio_pika.exceptions.CONNECTION_EXCEPTIONS):
            if self._consumer_tag is not None and not self._channel.is_closed:
                async with asyncio.timeout(_CANCEL_TIMEOUT):
                    await self._queue.cancel(self._consumer_tag)
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        await self._channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._cancelled:
            return  # arrived after basic.cancel; the channel close returns it
        this = asyncio.current_task()
        assert this is not None
        self._deliveries.add(this)
        try:
            await self._process(message)
        finally:
            self._deliveries.discard(this)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._work(message))
        self._handlers.add(task)
        try:
            await task
        except _PoisonError as exc:
            log.error(
                "poison message on %s (routing key %r) dead-lettered: %s",
                self._queue.name,
                message.routing_key,
                exc,
            )
            await _settle(message.reject(requeue=False))
            return
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            if self._cancelled:
                return  # abandoned by cancel(); the channel close returns the message
            log.warning("handler on %s was cancelled; redelivering", self._queue.name)
        except Exception:
            log.warning(
                "handler on %s failed for %r; redelivering",
                self._queue.name,
                message.routing_key,
                exc_info=True,
            )
        else:
            await _settle(message.ack())
            return
        finally:
            self._handlers.discard(task)
        await asyncio.sleep(self._redelivery_delay)
        await _settle(message.nack(requeue=True))


async def _settle(call: Awaitable[None]) -> None:
    try:
        await call
    except aio_pika.exceptions.CONNECTION_EXCEPTIONS as exc:
        log.warning("could not settle a message (%s); the broker will redeliver it", exc)


def _dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    headers: HeadersType = message.headers
    latest: dict[str, object] = {}
    deaths = headers.get("x-death")  # newest death first
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        latest = dict(deaths[0])
    queue = headers.get("x-first-death-queue", latest.get("queue", ""))
    reason = headers.get("x-first-death-reason", latest.get("reason", "unknown"))
    return DeadLetter(
        routing_key=message.routing_key or "",
        body=message.body,
        queue=str(queue),
        reason=str(reason),
    )


def _answering(channel: AbstractRobustChannel, queue: str, handler: RequestHandler) -> _Work:
    """The work of a server: answer each request once, on the channel it came from."""

    async def work(message: AbstractIncomingMessage) -> None:
        if message.redelivered:
            log.info("dropped a redelivered request on %s: requests are not retried", queue)
            return
        if not message.reply_to:
            log.warning("dropped a request without reply_to on %s", queue)
            return
        kind, body = await answer(handler, message.type or "", message.body)
        reply = aio_pika.Message(
            body,
            type=kind,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
            correlation_id=message.correlation_id,
        )
        try:
            await channel.default_exchange.publish(
                reply, routing_key=message.reply_to, mandatory=False
            )
        except aio_pika.exceptions.CONNECTION_EXCEPTIONS as exc:
            log.warning("could not reply on %s (%s); the caller will time out", queue, exc)

    return work


def _forget(future: asyncio.Future[_Reply]) -> None:
    """Mark a settled future's exception as seen, so asyncio does not report it."""
    if future.done() and not future.cancelled():
        future.exception()


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
