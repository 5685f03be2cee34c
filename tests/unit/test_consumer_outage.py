"""A bus handler that meets an outage is retried in place, holding its message, instead
of handing it back: on the real (memory) adapter, with a delivery limit of 2, a message
whose handler failed three times on a lost database connection would be dead-lettered."""

from __future__ import annotations

import asyncio
import uuid

from pymongo.errors import AutoReconnect

from services.consumer import BusConsumer
from services.context import Context
from shared.bus import DeadLetter
from shared.bus.memory import MemoryBus
from shared.config import ApiSettings, load
from shared.messages import JobDefined, Message


class Flaky(BusConsumer):
    name = "jobbuilder"
    routing_keys = ("job.defined",)

    def __init__(self, ctx: Context, failures: int, error: Exception) -> None:
        super().__init__(ctx)
        self.failures, self.error = failures, error
        self.calls = 0
        self.handled = asyncio.Event()

    async def on_message(self, message: Message) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.handled.set()


def context(bus: MemoryBus) -> Context:
    settings = load(ApiSettings, dev_mode=True, retry_initial_seconds=0.01, retry_max_seconds=0.02)
    return Context(settings=settings, bus=bus, store=None, artifacts=None)


async def test_an_outage_in_a_handler_is_waited_out_not_dead_lettered() -> None:
    bus = MemoryBus(prefix=f"{uuid.uuid4().hex}.", delivery_limit=2)
    await bus.connect()
    buried = asyncio.Event()

    async def bury(letter: DeadLetter) -> None:
        buried.set()

    await bus.subscribe_dead_letters(bury)
    consumer = Flaky(context(bus), failures=3, error=AutoReconnect("db restarting"))
    await consumer.start()
    try:
        await bus.publish(JobDefined(task_id="t", job_id="t.main.0.a1"))
        await asyncio.wait(
            [asyncio.create_task(consumer.handled.wait()), asyncio.create_task(buried.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        await consumer.stop()
        await bus.close()
    assert not buried.is_set(), "a good message was dead-lettered during an outage"
    assert consumer.calls == 4


async def test_a_bug_in_a_handler_still_goes_back_to_the_bus() -> None:
    bus = MemoryBus(prefix=f"{uuid.uuid4().hex}.", delivery_limit=2)
    await bus.connect()
    buried = asyncio.Event()

    async def bury(letter: DeadLetter) -> None:
        buried.set()

    await bus.subscribe_dead_letters(bury)
    consumer = Flaky(context(bus), failures=10, error=KeyError("a bug"))
    await consumer.start()
    try:
        await bus.publish(JobDefined(task_id="t", job_id="t.main.0.a1"))
        await buried.wait()
    finally:
        await consumer.stop()
        await bus.close()
    assert consumer.calls == 2
