"""Server fixtures shared by every test layer.

The servers are started by ``deploy/dev/infra.py`` (``deploy/dev/test.sh`` does it for
you) and found through ``HPO_TEST_*`` variables. A test that needs a server it cannot
reach fails and says how to start it; it never skips.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import aio_pika
import pytest

# PyTorch (the GP sampler) starts one compute thread per core; on the suite's 2 shared
# cores those threads contend with each other and with the other tests, and one GP test
# went from 16 s to over 120 s. Read by torch when it is first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Services a test starts as processes would listen for /metrics on their fixed default
# port, which another test run on the machine may hold: any free port instead.
os.environ.setdefault("HPO_OPS_PORT", "0")

pytest_plugins = ["tests.watchdog"]

HOW_TO_START = (
    "start the test servers with `python deploy/dev/infra.py up` and export what it "
    "prints, or run the whole suite with `deploy/dev/test.sh`"
)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _server_url(var: str, default: str | None, default_port: int, what: str) -> str:
    url = os.environ.get(var, default or "")
    if not url:
        pytest.fail(f"{what}: {var} is not set; {HOW_TO_START}", pytrace=False)
    if not _reachable(url, default_port):
        pytest.fail(f"{what} is not reachable at {url} ({var}); {HOW_TO_START}", pytrace=False)
    return url


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return _server_url("HPO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", 5672, "RabbitMQ")


@pytest.fixture(scope="session")
def mongo_url() -> str:
    return _server_url("HPO_TEST_MONGO_URL", None, 27017, "MongoDB-protocol server (SecantusDB)")


@pytest.fixture(scope="session")
def s3_url() -> str:
    """``s3://KEY:SECRET@HOST:PORT`` of the test S3 server, without a bucket."""
    return _server_url("HPO_TEST_S3_URL", None, 9000, "S3 server (moto)")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The machine's PostgreSQL (a superuser that may create databases)."""
    return _server_url(
        "HPO_TEST_POSTGRES_URL",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        5432,
        "PostgreSQL (the Optuna export is read back from it; start the machine's "
        "PostgreSQL, or set HPO_TEST_POSTGRES_URL)",
    )


@pytest.fixture
def unique() -> str:
    """A fresh name per test, for queue prefixes, database names and buckets."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def bus_prefix(unique: str) -> str:
    return f"{unique}."


@pytest.fixture
def mongo_db_url(mongo_url: str, unique: str) -> Iterator[str]:
    """A database of its own for this test (dropped afterwards by the server's restart)."""
    yield f"{mongo_url.rstrip('/')}/{unique}"


@pytest.fixture
def store_url(unique: str) -> Iterator[str]:
    """A ``memory://`` store of this test's own, shared by every context the test opens
    in this process (and forgotten afterwards): for tests that need a store but are not
    about the database. Every repository runs against the real server in
    ``tests/contract/test_store.py``."""
    from shared.store.memory import MemoryStore

    url = f"memory://{unique}"
    yield url
    MemoryStore.forget(url)


@pytest.fixture
def s3_bucket_url(s3_url: str, unique: str) -> str:
    return f"{s3_url.rstrip('/')}/{unique}?secure=false&region=us-east-1"


BUS_SERVICES = ("api", "steering", "jobbuilder", "broker", "storage", "monitor")


async def delete_bus_objects(amqp_url: str, prefix: str) -> None:
    """Delete the queues and exchanges that services declared under ``prefix``.

    Every service queue is a quorum queue, a Raft group of its own: left behind by each
    test, they pile up in the broker until it stops answering.
    """
    queues = [f"{prefix}hpo.{s}" for s in BUS_SERVICES] + [f"{prefix}hpo.dead-letter"]
    exchanges = [f"{prefix}hpo", f"{prefix}hpo.dlx"]
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for name in queues + exchanges:
            channel = await connection.channel()
            try:
                if name in queues:
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            except aio_pika.exceptions.ChannelClosed:
                pass  # never declared (a service the test did not run)
            finally:
                if not channel.is_closed:
                    await channel.close()


@pytest.fixture
def amqp_prefix_cleanup(bus_prefix: str) -> Iterator[list[str]]:
    """Append the broker's URL to the yielded list when the test uses RabbitMQ with
    ``bus_prefix``: its queues and exchanges are deleted afterwards."""
    used: list[str] = []
    yield used
    for url in used:
        asyncio.run(_bounded_cleanup(url, bus_prefix))


async def _bounded_cleanup(url: str, prefix: str) -> None:
    """A teardown that cannot hang the run: a broker that does not answer within a minute
    (one the test killed, one still electing its queues' leaders) keeps its objects."""
    try:
        async with asyncio.timeout(60):
            await delete_bus_objects(url, prefix)
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
        print(f"bus cleanup of {prefix!r} skipped: {type(exc).__name__}: {exc}")
