"""The bus port: what every service may ask of the message bus.

Semantics that every adapter guarantees (tests/contract/test_bus.py checks them):

* ``publish`` returns only once the broker has the message (publisher confirm);
  messages are persistent.
* Each service owns one queue ``<prefix>hpo.<service>`` bound to the routing keys it
  handles. Several consumers of the same service share the queue (competing consumers).
* At-least-once delivery: a message is acknowledged only after the handler returns.
  A handler that raises gets the message again (redelivery); once a message has been
  delivered ``delivery_limit`` times it goes to the dead-letter queue
  ``<prefix>hpo.dead-letter`` instead of looping.
* A consumer that dies before acknowledging (crash, connection loss) loses nothing:
  the message is delivered again to another consumer or after restart.
* At most ``prefetch`` unacknowledged messages per subscription.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pydantic import BaseModel

from shared.messages import Message

Handler = Callable[[Message], Awaitable[None]]


class DeadLetter(BaseModel):
    """A message that exhausted its deliveries, as found in the dead-letter queue."""

    routing_key: str
    body: bytes
    queue: str
    reason: str


DeadLetterHandler = Callable[[DeadLetter], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop consuming; unacknowledged messages return to the queue."""


class Bus(Protocol):
    async def connect(self) -> None:
        """Open connections and declare the exchange; idempotent."""

    async def close(self) -> None:
        """Cancel subscriptions and close connections."""

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
