"""Fixtures of the fault tests: servers the test may kill (tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PrivateMongo, rabbitnode


@pytest.fixture
def private_mongo(tmp_path: Path) -> Iterator[PrivateMongo]:
    """Not started: the test starts, kills and restarts it."""
    mongo = PrivateMongo(tmp_path / "mongo")
    try:
        yield mongo
    finally:
        mongo.stop()


@pytest.fixture(scope="module")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A private RabbitMQ node for the module (a boot costs 5-15 s), running when a test
    starts; a test may kill and restart it."""
    module = rabbitnode()
    node = module.RabbitNode(tmp_path_factory.mktemp("rabbit"))
    try:
        node.start()
    except module.RabbitNodeError as exc:
        pytest.fail(f"cannot start a private RabbitMQ node: {exc}", pytrace=False)
    try:
        yield node
    finally:
        node.remove()


@pytest.fixture
def rabbit(rabbit_node: Any) -> Any:
    rabbit_node.start()  # a previous test may have left it killed
    return rabbit_node
