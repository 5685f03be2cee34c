"""A bus that counts its failures, around any adapter.

Failed publishes and requests, and handlers that raise (the bus then redelivers or
dead-letters the message), are counted in ``hpo_bus_errors_total{operation}`` and then
raised as before: the adapters and their contract stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter

from shared.bus import Bus, Handler, RequestHandler, Subscription
from shared.bus.port import DeadLetterHandler
from shared.messages import Message


class MeteredBus:
    def __init__(self, bus: Bus, errors: Counter) -> None:
        self.inner = bus
        self._errors = errors

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def publish(self, message: Message) -> None:
        try:
            await self.inner.publish(message)
        except Exception:
            self._errors.labels("publish").inc()
            raise

    async def subscribe(
        self,
        service: str,
        routing_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 16,
    ) -> Subscription:
        async def counted(message: Message) -> None:
            try:
                await handler(message)
            except Exception:
                self._errors.labels("handle").inc()
                raise

        return await self.inner.subscribe(service, routing_keys, counted, prefetch=prefetch)

    async def subscribe_dead_letters(self, handler: DeadLetterHandler) -> Subscription:
        return await self.inner.subscribe_dead_letters(handler)

    async def watch(self, routing_keys: Sequence[str], handler: Handler) -> Subscription:
        async def counted(message: Message) -> None:
            try:
                await handler(message)
            except Exception:
                self._errors.labels("watch").inc()
                raise

        return await self.inner.watch(routing_keys, counted)

    async def request(
        self,
        target: str,
        message: Message,
        *,
        timeout: float,  # noqa: ASYNC109 - the adapter's own argument, passed on
    ) -> Message:
        try:
            return await self.inner.request(target, message, timeout=timeout)
        except Exception:
            self._errors.labels("request").inc()
            raise

    async def serve(
        self, target: str, handler: RequestHandler, *, prefetch: int = 16
    ) -> Subscription:
        async def counted(message: Message) -> Message:
            try:
                return await handler(message)
            except Exception:
                self._errors.labels("serve").inc()
                raise

        return await self.inner.serve(target, counted, prefetch=prefetch)
