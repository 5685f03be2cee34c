"""Server fixtures shared by every test layer.

The servers are started by ``deploy/dev/infra.py`` (``deploy/dev/test.sh`` does it for
you) and found through ``HPO_TEST_*`` variables. A test that needs a server it cannot
reach fails and says how to start it; it never skips.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

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
def s3_bucket_url(s3_url: str, unique: str) -> str:
    return f"{s3_url.rstrip('/')}/{unique}?secure=false&region=us-east-1"
