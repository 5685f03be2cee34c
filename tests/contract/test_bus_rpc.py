"""Request/reply contract (shared/bus/port.py), run against every adapter.

The request and reply classes are the test's own, registered once under kinds that no
service uses. The RabbitMQ case uses a fresh prefix per test; the request queues are
auto-delete and the cleanup deletes whatever is left. Callers and servers sit on
different bus objects, as the api and steering do. Nothing here measures latency; the
short timeouts are for requests that must not be answered at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import ClassVar, Protocol

import pytest

from shared.bus import (
    Bus,
    NoResponderError,
    RemoteError,
    RequestLostError,
    RequestTimeoutError,
    register_rpc,
)
from shared.bus.amqp import AmqpBus
from shared.bus.memory import MemoryBus
from shared.messages import Message

TIMEOUT = 20.0  # for replies that must come
SHORT = 0.5  # for requests that must not be answered
TARGETS = ("alpha", "beta", "nobody")


class Echo(Message):
    routing_key: ClassVar[str] = "test.rpc.echo"
    text: str


class Echoed(Message):
    routing_key: ClassVar[str] = "test.rpc.echoed"
    text: str
    server: str


class NotRegistered(Message):
    routing_key: ClassVar[str] = "test.rpc.not-registered"


register_rpc(Echo, Echoed)


class AdapterBus(Bus, Protocol):
    async def delete_all(
        self, services: Iterable[str] = (), rpc_targets: Iterable[str] = ()
    ) -> None: ...


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


def _fast_reconnect(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}reconnect_interval=0.2"


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
def build_bus(request: pytest.FixtureRequest, bus_prefix: str) -> Callable[[], AdapterBus]:
    if request.param == "amqp":
        url = _fast_reconnect(request.getfixturevalue("amqp_url"))
        return lambda: AmqpBus(url, prefix=bus_prefix)
    return lambda: MemoryBus(prefix=bus_prefix)


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
        await cleaner.delete_all(rpc_targets=TARGETS)
        await cleaner.close()


class Server:
    """An echoing handler that records each request, optionally holding it at a gate."""

    def __init__(self, name: str, gate: asyncio.Event | None = None) -> None:
        self.name = name
        self.received: list[str] = []
        self._gate = gate
        self._changed = asyncio.Event()

    async def __call__(self, message: Message) -> Message:
        assert isinstance(message, Echo)
        self.received.append(message.text)
        self._changed.set()
        if self._gate is not None:
            await self._gate.wait()
        return Echoed(text=message.text, server=self.name)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()


async def echo(bus: Bus, target: str, text: str, *, timeout: float = TIMEOUT) -> Echoed:
    reply = await bus.request(target, Echo(text=text), timeout=timeout)
    assert isinstance(reply, Echoed)
    return reply


async def test_round_trip(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()
    await server_bus.serve("alpha", Server("s1"))

    request = Echo(text="hello")
    reply = await caller.request("alpha", request, timeout=TIMEOUT)

    assert isinstance(reply, Echoed)
    assert (reply.text, reply.server) == ("hello", "s1")
    assert reply.event_id != request.event_id


async def test_one_bus_serves_several_targets(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()
    await server_bus.serve("alpha", Server("a"))
    await server_bus.serve("beta", Server("b"))

    assert (await echo(caller, "beta", "1")).server == "b"
    assert (await echo(caller, "alpha", "2")).server == "a"


async def test_concurrent_requests_get_their_own_replies(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()
    texts = [f"r{i}" for i in range(5)]
    gates = {text: asyncio.Event() for text in texts}
    arrived: list[str] = []
    all_arrived = asyncio.Event()

    async def held(message: Message) -> Message:
        assert isinstance(message, Echo)
        arrived.append(message.text)
        if len(arrived) == len(texts):
            all_arrived.set()
        await gates[message.text].wait()
        return Echoed(text=message.text, server="s")

    await server_bus.serve("alpha", held, prefetch=len(texts))
    calls = [asyncio.create_task(echo(caller, "alpha", text)) for text in texts]
    await asyncio.wait_for(all_arrived.wait(), TIMEOUT)

    # Answer in the reverse order of asking: each reply must still find its caller.
    for text, call in reversed(list(zip(texts, calls, strict=True))):
        gates[text].set()
        assert (await call).text == text


async def test_competing_servers_share_the_load(make_bus: BusMaker) -> None:
    caller = await make_bus()
    gate = asyncio.Event()
    servers = [Server("s1", gate), Server("s2", gate)]
    for server in servers:
        await (await make_bus()).serve("alpha", server, prefetch=1)

    calls = [asyncio.create_task(echo(caller, "alpha", f"r{i}")) for i in range(4)]
    # Each server holds one request at the gate, so both must have been given one.
    for server in servers:
        await server.wait_for(1)
    gate.set()

    replies = await asyncio.gather(*calls)
    assert sorted(reply.text for reply in replies) == ["r0", "r1", "r2", "r3"]
    assert {reply.server for reply in replies} == {"s1", "s2"}
    assert sorted(servers[0].received + servers[1].received) == ["r0", "r1", "r2", "r3"]


async def test_handler_error_is_a_remote_error_and_not_retried(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()
    received: list[str] = []

    async def picky(message: Message) -> Message:
        assert isinstance(message, Echo)
        received.append(message.text)
        if message.text == "bad":
            raise LookupError("no study 's1'")
        return Echoed(text=message.text, server="s")

    await server_bus.serve("alpha", picky, prefetch=1)
    with pytest.raises(RemoteError) as raised:
        await echo(caller, "alpha", "bad")

    assert raised.value.reason == "LookupError: no study 's1'"
    assert "Traceback" not in str(raised.value)
    assert (await echo(caller, "alpha", "good")).text == "good"
    assert received == ["bad", "good"]


async def test_unregistered_reply_is_a_remote_error(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()

    async def wrong(message: Message) -> Message:
        return NotRegistered()

    await server_bus.serve("alpha", wrong)
    with pytest.raises(RemoteError, match="NotRegistered is not registered"):
        await echo(caller, "alpha", "x")


async def test_unregistered_request_is_refused_before_sending(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()
    server = Server("s1")
    await server_bus.serve("alpha", server)

    with pytest.raises(TypeError, match="NotRegistered is not registered"):
        await caller.request("alpha", NotRegistered(), timeout=TIMEOUT)
    assert (await echo(caller, "alpha", "next")).text == "next"
    assert server.received == ["next"]


async def test_slow_server_times_out_and_stale_requests_are_dropped(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()
    gate = asyncio.Event()
    server = Server("s1", gate)
    await server_bus.serve("alpha", server, prefetch=1)

    with pytest.raises(RequestTimeoutError) as raised:
        await echo(caller, "alpha", "slow", timeout=SHORT)
    assert isinstance(raised.value, TimeoutError)
    # This one waits behind "slow" until its caller gives up; then it must expire unread.
    with pytest.raises(RequestTimeoutError):
        await echo(caller, "alpha", "stale", timeout=SHORT)
    await asyncio.sleep(SHORT)  # margin: the broker starts the TTL a little after the caller
    gate.set()

    assert (await echo(caller, "alpha", "fresh")).text == "fresh"
    assert server.received == ["slow", "fresh"]


async def test_no_responder_fails_fast(make_bus: BusMaker) -> None:
    caller = await make_bus()
    with pytest.raises(NoResponderError, match="nobody"):
        await echo(caller, "nobody", "x")


async def test_no_responder_once_the_last_server_left(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()
    subscription = await server_bus.serve("alpha", Server("s1"))
    assert (await echo(caller, "alpha", "1")).server == "s1"

    await subscription.cancel()
    # RabbitMQ deletes the auto-delete queue just after the cancel; until it has, a
    # request sits in the queue and times out. The memory adapter is immediate.
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                reply = await echo(caller, "alpha", "2", timeout=SHORT)
            except RequestTimeoutError:
                continue
            except NoResponderError:
                break
            pytest.fail(f"a cancelled server answered: {reply!r}")


@pytest.mark.parametrize("others", ["none", "another-server"])
async def test_server_cancelled_mid_call_leaves_the_caller_to_time_out(
    make_bus: BusMaker, others: str
) -> None:
    caller, first_bus = await make_bus(), await make_bus()
    first = Server("s1", asyncio.Event())  # never lets go
    subscription = await first_bus.serve("alpha", first, prefetch=1)
    call = asyncio.create_task(echo(caller, "alpha", "abandoned", timeout=2.0))
    await first.wait_for(1)

    second = Server("s2")
    if others == "another-server":
        await (await make_bus()).serve("alpha", second, prefetch=1)
    await subscription.cancel()

    with pytest.raises(RequestTimeoutError):
        await call
    if others == "another-server":
        # The abandoned request was not retried on the server that remained.
        assert (await echo(caller, "alpha", "next")).server == "s2"
        assert second.received == ["next"]


async def test_close_fails_requests_in_flight(make_bus: BusMaker) -> None:
    caller, server_bus = await make_bus(), await make_bus()
    server = Server("s1", asyncio.Event())
    await server_bus.serve("alpha", server)
    call = asyncio.create_task(echo(caller, "alpha", "x"))
    await server.wait_for(1)

    await caller.close()
    with pytest.raises(RequestLostError):
        await call


@pytest.mark.rabbitmq
async def test_connection_loss_fails_requests_in_flight(amqp_url: str, bus_prefix: str) -> None:
    url = _fast_reconnect(amqp_url)
    caller, server_bus = AmqpBus(url, prefix=bus_prefix), AmqpBus(url, prefix=bus_prefix)
    try:
        for bus in (caller, server_bus):
            await bus.connect()
        gate = asyncio.Event()
        server = Server("s1", gate)
        await server_bus.serve("alpha", server)
        call = asyncio.create_task(echo(caller, "alpha", "in-flight"))
        await server.wait_for(1)

        await _break_connection(caller)
        with pytest.raises(RequestLostError):
            await call
        gate.set()
        # The robust connection comes back, and so do requests.
        assert (await echo(caller, "alpha", "after")).text == "after"
    finally:
        for bus in (caller, server_bus):
            await bus.close()
        await server_bus.connect()
        await server_bus.delete_all(rpc_targets=TARGETS)
        await server_bus.close()


async def _break_connection(bus: AmqpBus) -> None:
    """Close the connection under aio-pika's robust wrapper, as a network failure would."""
    connection = bus._connection
    assert connection is not None and connection.transport is not None
    await connection.transport.connection.close(ConnectionError("simulated network failure"))
