"""The common skeleton of a bus-driven service and of a web-only one."""

from __future__ import annotations

from fastapi import FastAPI

from services.context import Context
from shared.bus import Subscription
from shared.messages import Message


class BusConsumer:
    """Consumes the service's queue with :meth:`on_message`; subclasses add the logic.

    Subclasses set ``name`` (the queue is ``hpo.<name>``) and ``routing_keys``, and
    implement ``on_message`` and ``reconcile``.
    """

    name: str = ""
    routing_keys: tuple[str, ...] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.ctx.bus.subscribe(
            self.name, self.routing_keys, self.on_message
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None

    async def on_message(self, message: Message) -> None:
        raise NotImplementedError

    async def reconcile(self) -> None:
        raise NotImplementedError


class WebService:
    """A service that is only an HTTP app: nothing to consume, nothing to reconcile."""

    name: str = ""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def start(self) -> None:
        return None

    async def reconcile(self) -> None:
        return None

    async def stop(self) -> None:
        return None
