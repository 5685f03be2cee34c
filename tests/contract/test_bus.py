"""Bus contract (shared/bus/port.py), run against every adapter.

The RabbitMQ case uses a fresh prefix per test and deletes its exchanges and queues at
the end. Absence ("this queue did not get that message") is checked with a sentinel
published afterwards on a prefetch-1 consumer: queues are FIFO, so a wrongly routed
message would arrive before the sentinel.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

import pytest

from shared.bus.amqp import AmqpBus
from shared.bus.memory import MemoryBus, topic_matches
from shared.bus.port import Bus, DeadLetter
from shared.messages import (
    JobFailed,
    JobFinished,
    Message,
    PointEvaluated,
    PointFailed,
    TaskCancelled,
    TaskFinished,
    TaskSubmitted,
    decode,
    encode,
)

TIMEOUT = 20.0
LIMIT = 3
DELAY = 0.05
SERVICES = ("alpha", "beta")

T = TypeVar("T")


class AdapterBus(Bus, Protocol):
    async def declare(self, service: str, routing_keys: Sequence[str]) -> None: ...

    async def delete_all(self, services: Iterable[str] = ()) -> None: ...


class BusMaker:
    """Builds connected buses of one adapter and prefix; closes them all at the end."""

    def __init__(self, build: Callable[[], AdapterBus]) -> None:
        self._build = build
        self.buses: list[AdapterBus] = []

    async def __call__(self) -> AdapterBus:
        bus = self._build()
        await bus.connect()
        self.buses.append(bus)
        return bus


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
def build_bus(request: pytest.FixtureRequest, bus_prefix: str) -> Callable[[], AdapterBus]:
    if request.param == "amqp":
        url: str = request.getfixturevalue("amqp_url")
        return lambda: AmqpBus(url, prefix=bus_prefix, delivery_limit=LIMIT, redelivery_delay=DELAY)
    return lambda: MemoryBus(prefix=bus_prefix, delivery_limit=LIMIT, redelivery_delay=DELAY)


@pytest.fixture
async def make_bus(build_bus: Callable[[], AdapterBus]) -> AsyncIterator[BusMaker]:
    maker = BusMaker(build_bus)
    try:
        yield maker
    finally:
        for bus in maker.buses:
            await bus.close()
        cleaner = build_bus()
        await cleaner.connect()
        await cleaner.delete_all(SERVICES)
        await cleaner.close()


class Inbox(Generic[T]):
    """A handler that records what it gets, optionally holding each delivery at a gate."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.items: list[T] = []
        self._gate = gate
        self._changed = asyncio.Event()

    async def __call__(self, item: T) -> None:
        self.items.append(item)
        self._changed.set()
        if self._gate is not None:
            await self._gate.wait()

    async def wait_for(self, count: int) -> list[T]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.items


async def wait(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), TIMEOUT)


class UnknownEvent(Message):
    routing_key: ClassVar[str] = "bogus.event"


class TaskSubmittedWithoutTaskId(Message):
    routing_key: ClassVar[str] = "task.submitted"


async def test_delivers_to_bound_queues_only(make_bus: BusMaker) -> None:
    bus = await make_bus()
    alpha: Inbox[Message] = Inbox()
    beta: Inbox[Message] = Inbox()
    await bus.subscribe("alpha", ["task.submitted"], alpha, prefetch=1)
    await bus.subscribe("beta", ["task.cancelled"], beta, prefetch=1)

    submitted = TaskSubmitted(task_id="t1")
    cancelled = TaskCancelled(task_id="t1")
    later = TaskSubmitted(task_id="t2")
    for message in (submitted, cancelled, later):
        await bus.publish(message)

    assert await alpha.wait_for(2) == [submitted, later]
    assert await beta.wait_for(1) == [cancelled]


async def test_queue_receives_only_once_declared(make_bus: BusMaker) -> None:
    bus = await make_bus()
    await bus.publish(TaskSubmitted(task_id="before-declare"))
    await bus.declare("alpha", ["task.submitted"])
    kept = TaskSubmitted(task_id="kept")
    await bus.publish(kept)

    inbox: Inbox[Message] = Inbox()
    await bus.subscribe("alpha", ["task.submitted"], inbox, prefetch=1)
    sentinel = TaskSubmitted(task_id="sentinel")
    await bus.publish(sentinel)

    assert await inbox.wait_for(2) == [kept, sentinel]


async def test_topic_wildcards(make_bus: BusMaker) -> None:
    bus = await make_bus()
    some: Inbox[Message] = Inbox()
    everything: Inbox[Message] = Inbox()
    await bus.subscribe("alpha", ["*.finished", "point.#"], some, prefetch=1)
    await bus.subscribe("beta", ["#"], everything, prefetch=1)

    sent: list[Message] = [
        JobFailed(task_id="t", job_id="j", reason="oom"),
        TaskFinished(task_id="t", status="done"),
        JobFinished(task_id="t", job_id="j", generation=1),
        PointEvaluated(task_id="t", segment="main", point_id="p", loss=0.5),
        TaskSubmitted(task_id="t"),
        PointFailed(task_id="t", segment="main", point_id="p", reason="x"),
    ]
    for message in sent:
        await bus.publish(message)

    assert await some.wait_for(4) == [sent[1], sent[2], sent[3], sent[5]]
    assert await everything.wait_for(len(sent)) == sent


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("task.*", "task.submitted", True),
        ("*.finished", "job.finished", True),
        ("*.finished", "job.failed", False),
        ("*", "task.submitted", False),
        ("#", "task.submitted", True),
        ("task.#", "task", True),
        ("task.#", "task.a.b", True),
        ("#.b", "a.b", True),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.x.y.c", True),
        ("a.#.c", "a.x.y", False),
        ("a.*.c", "a.c", False),
        ("task.submitted", "task.submittedx", False),
    ],
)
def test_memory_topic_rule_matches_amqp(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


async def test_competing_consumers_get_distinct_messages(make_bus: BusMaker) -> None:
    bus = await make_bus()
    gate = asyncio.Event()
    first: Inbox[Message] = Inbox(gate)
    second: Inbox[Message] = Inbox(gate)
    await bus.subscribe("alpha", ["task.submitted"], first, prefetch=1)
    await bus.subscribe("alpha", ["task.submitted"], second, prefetch=1)

    sent = [TaskSubmitted(task_id=f"t{i}") for i in range(6)]
    for message in sent:
        await bus.publish(message)
    # Each consumer holds one message at the gate, so both must have been served.
    await first.wait_for(1)
    await second.wait_for(1)
    gate.set()

    async with asyncio.timeout(TIMEOUT):
        while len(first.items) + len(second.items) < len(sent):
            await asyncio.sleep(0.01)
    received = first.items + second.items
    assert sorted(m.event_id for m in received) == sorted(m.event_id for m in sent)


async def test_redelivers_after_handler_error(make_bus: BusMaker) -> None:
    bus = await make_bus()
    calls: list[Message] = []
    succeeded = asyncio.Event()

    async def flaky(message: Message) -> None:
        calls.append(message)
        if len(calls) == 1:
            raise RuntimeError("transient failure")
        succeeded.set()

    subscription = await bus.subscribe("alpha", ["task.submitted"], flaky, prefetch=1)
    sent = TaskSubmitted(task_id="t1")
    await bus.publish(sent)
    await wait(succeeded)
    assert calls == [sent, sent]

    # The success was acknowledged: a new consumer gets only what comes next.
    await subscription.cancel()
    inbox: Inbox[Message] = Inbox()
    await bus.subscribe("alpha", ["task.submitted"], inbox, prefetch=1)
    sentinel = TaskSubmitted(task_id="sentinel")
    await bus.publish(sentinel)
    assert await inbox.wait_for(1) == [sentinel]
    assert len(calls) == 2


async def test_dead_letters_after_delivery_limit(make_bus: BusMaker, bus_prefix: str) -> None:
    bus = await make_bus()
    calls: list[Message] = []

    async def failing(message: Message) -> None:
        calls.append(message)
        raise RuntimeError("permanent failure")

    dead: Inbox[DeadLetter] = Inbox()
    await bus.subscribe_dead_letters(dead)
    await bus.subscribe("alpha", ["task.submitted"], failing, prefetch=1)
    sent = TaskSubmitted(task_id="t1")
    await bus.publish(sent)

    [letter] = await dead.wait_for(1)
    assert calls == [sent] * LIMIT
    assert letter.routing_key == "task.submitted"
    assert decode(letter.routing_key, letter.body) == sent
    assert letter.queue == f"{bus_prefix}hpo.alpha"
    assert letter.reason == "delivery_limit"


async def test_poison_messages_go_straight_to_dead_letter(
    make_bus: BusMaker, bus_prefix: str
) -> None:
    bus = await make_bus()
    handled: Inbox[Message] = Inbox()
    dead: Inbox[DeadLetter] = Inbox()
    await bus.subscribe_dead_letters(dead)
    await bus.subscribe("alpha", ["task.submitted", "bogus.*"], handled, prefetch=1)

    unknown = UnknownEvent()
    invalid = TaskSubmittedWithoutTaskId()
    for message in (unknown, invalid):
        await bus.publish(message)

    letters = await dead.wait_for(2)
    queue = f"{bus_prefix}hpo.alpha"
    assert sorted((d.routing_key, d.body, d.queue, d.reason) for d in letters) == sorted(
        [
            ("bogus.event", encode(unknown), queue, "rejected"),
            ("task.submitted", encode(invalid), queue, "rejected"),
        ]
    )
    good = TaskSubmitted(task_id="t1")
    await bus.publish(good)
    assert await handled.wait_for(1) == [good]


@pytest.mark.parametrize("crash", ["cancel-subscription", "close-bus"])
async def test_no_loss_when_a_consumer_dies(make_bus: BusMaker, crash: str) -> None:
    bus = await make_bus()
    started = asyncio.Event()

    async def stuck(message: Message) -> None:
        started.set()
        await asyncio.Event().wait()

    subscription = await bus.subscribe("alpha", ["task.submitted"], stuck, prefetch=1)
    sent = TaskSubmitted(task_id="t1")
    await bus.publish(sent)
    await wait(started)

    if crash == "close-bus":
        await bus.close()  # the whole process goes away without acknowledging
        bus = await make_bus()
    else:
        await subscription.cancel()
    inbox: Inbox[Message] = Inbox()
    await bus.subscribe("alpha", ["task.submitted"], inbox, prefetch=1)
    assert await inbox.wait_for(1) == [sent]


async def test_prefetch_bounds_concurrent_handlers(make_bus: BusMaker) -> None:
    bus = await make_bus()
    prefetch = 2
    gate = asyncio.Event()
    full = asyncio.Event()
    over = asyncio.Event()
    running = 0
    peak = 0
    done: Inbox[Message] = Inbox()

    async def slow(message: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == prefetch:
            full.set()
        if running > prefetch:
            over.set()
        try:
            await gate.wait()
        finally:
            running -= 1
        await done(message)

    await bus.subscribe("alpha", ["task.submitted"], slow, prefetch=prefetch)
    sent = [TaskSubmitted(task_id=f"t{i}") for i in range(6)]
    for message in sent:
        await bus.publish(message)

    await wait(full)  # handlers do run concurrently, up to prefetch ...
    with pytest.raises(TimeoutError):  # ... and not beyond, however long we wait
        await asyncio.wait_for(over.wait(), 0.5)
    gate.set()

    received = await done.wait_for(len(sent))
    assert sorted(m.event_id for m in received) == sorted(m.event_id for m in sent)
    assert peak == prefetch


async def test_every_watcher_gets_its_own_copy(make_bus: BusMaker) -> None:
    first, second = await make_bus(), await make_bus()
    seen_first: Inbox[Message] = Inbox()
    seen_second: Inbox[Message] = Inbox()
    await first.watch(["task.*"], seen_first)
    await second.watch(["task.*"], seen_second)
    service: Inbox[Message] = Inbox()
    await first.subscribe("alpha", ["task.submitted"], service, prefetch=1)

    submitted = TaskSubmitted(task_id="t1")
    await first.publish(submitted)
    await first.publish(PointEvaluated(task_id="t1", segment="s0", point_id="p1", loss=0.5))
    sentinel = TaskFinished(task_id="t1", status="done")
    await second.publish(sentinel)

    # The point event matched no watch: it would have arrived before the sentinel.
    assert await seen_first.wait_for(2) == [submitted, sentinel]
    assert await seen_second.wait_for(2) == [submitted, sentinel]
    # A watch takes nothing from the service's queue.
    assert await service.wait_for(1) == [submitted]


async def test_a_failing_watch_handler_drops_the_message_and_goes_on(make_bus: BusMaker) -> None:
    bus = await make_bus()
    seen: list[str] = []
    delivered = asyncio.Event()

    async def handler(message: Message) -> None:
        assert isinstance(message, TaskSubmitted)
        seen.append(message.task_id)
        if message.task_id == "after":
            delivered.set()
        if message.task_id == "boom":
            raise RuntimeError("handler bug")

    await bus.watch(["task.submitted"], handler)
    await bus.publish(TaskSubmitted(task_id="boom"))
    await bus.publish(TaskSubmitted(task_id="after"))
    await wait(delivered)
    assert seen == ["boom", "after"]  # not redelivered


async def test_a_cancelled_watch_gets_nothing_more(make_bus: BusMaker) -> None:
    bus = await make_bus()
    gone: Inbox[Message] = Inbox()
    kept: Inbox[Message] = Inbox()
    watch = await bus.watch(["task.submitted"], gone)
    await bus.watch(["task.submitted"], kept)
    before = TaskSubmitted(task_id="before")
    await bus.publish(before)
    await gone.wait_for(1)
    await watch.cancel()

    after = TaskSubmitted(task_id="after")
    await bus.publish(after)
    assert await kept.wait_for(2) == [before, after]
    assert gone.items == [before]


@pytest.mark.rabbitmq
async def test_a_watch_comes_back_after_a_connection_loss(amqp_url: str, bus_prefix: str) -> None:
    url = f"{amqp_url}{'&' if '?' in amqp_url else '?'}reconnect_interval=0.2"
    watcher, publisher = AmqpBus(url, prefix=bus_prefix), AmqpBus(url, prefix=bus_prefix)
    try:
        for bus in (watcher, publisher):
            await bus.connect()
        seen: Inbox[Message] = Inbox()
        await watcher.watch(["task.submitted"], seen)
        await publisher.publish(TaskSubmitted(task_id="before"))
        await seen.wait_for(1)

        connection = watcher._connection
        assert connection is not None and connection.transport is not None
        await connection.transport.connection.close(ConnectionError("simulated network failure"))
        # Published while the watcher reconnects, a message may be lost (at most once);
        # once its queue is declared again, the watch delivers.
        async with asyncio.timeout(TIMEOUT):
            while not any(
                isinstance(m, TaskSubmitted) and m.task_id == "after" for m in seen.items
            ):
                await publisher.publish(TaskSubmitted(task_id="after"))
                await asyncio.sleep(0.1)
    finally:
        for bus in (watcher, publisher):
            await bus.close()
        await publisher.connect()
        await publisher.delete_all(SERVICES)
        await publisher.close()
