"""The common skeleton of a bus-driven service and of a web-only one."""

from __future__ import annotations

from fastapi import FastAPI

from services.context import Context
from services.outage import location
from services.startup import Backoff, retrying
from shared.bus import Subscription
from shared.messages import Message


class BusConsumer:
    """Consumes the service's queue with :meth:`on_message`; subclasses add the logic.

    Subclasses set ``name`` (the queue is ``hpo.<name>``) and ``routing_keys``, and
    implement ``on_message`` and ``reconcile``. A handler that fails because the
    database or the bus is away is retried in place until they are back, holding its
    message: handing it back would burn its deliveries and dead-letter a good message
    during a restart of the database.
    """

    name: str = ""
    routing_keys: tuple[str, ...] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.ctx.bus.subscribe(
            self.name, self.routing_keys, self._handle
        )

    async def _handle(self, message: Message) -> None:
        settings = self.ctx.settings
        what = (
            f"{self.name} handling {message.routing_key}: the database at "
            f"{location(settings.mongo_url)} or the bus at {location(settings.bus_url)}"
        )
        async for attempt in retrying(what, Backoff.of(settings), forever=True):
            with attempt:
                await self.on_message(message)

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
